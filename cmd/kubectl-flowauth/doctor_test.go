package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/flowauth/flowauth/pkg/policy"
	"github.com/flowauth/flowauth/pkg/render"
	"github.com/flowauth/flowauth/pkg/secretmap"
)

// TestDoctorSaysWhatTheNamespaceIsDenied: doctor reads the webhook's arguments. A namespace that
// key lookup does not watch is told so with the upgrade that adds it (the webhook, at apply time,
// says the same, never "not found"); one without the allow-list the webhook requires fails.
func TestDoctorSaysWhatTheNamespaceIsDenied(t *testing.T) {
	deploy := func(args ...string) *appsv1.Deployment {
		if !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--client-ca-file") || a == "--no-client-auth" }) {
			args = append(args, "--client-ca-file=/etc/flowauth/client-ca/ca.crt")
		}
		return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "flowauth", Namespace: "flowauth-system"},
			Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "webhook", Args: args}}}}}}
	}
	ns := func(annotations map[string]string) *corev1.Namespace {
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "flows", Annotations: annotations}}
	}
	for _, tt := range []struct {
		name   string
		deploy *appsv1.Deployment
		ns     *corev1.Namespace
		want   string
		failed int
	}{
		{"unwatched", deploy("--secret-lookup=keys", "--secret-lookup-namespaces=etl,ml"), ns(nil),
			"warn  namespace flows is not in the webhook's secretLookupNamespaces (etl,ml)", 0},
		{"watched", deploy("--secret-lookup=keys", "--secret-lookup-namespaces=etl,flows"), ns(nil), "", 0},
		{"allow-list required and missing", deploy("--require-allow-list"), ns(nil),
			"FAIL  namespace flows has no flowauth.io/allowed-secrets annotation and the webhook requires one", 1},
		{"allow-list set", deploy("--require-allow-list"), ns(map[string]string{"flowauth.io/allowed-secrets": "AWS_CREDENTIALS"}),
			"ok    namespace flows allows: AWS_CREDENTIALS", 0},
		// On the old main doctor said "ok namespace flows allows: ..." of a list nothing read.
		{"zero privilege and an allow-list", deploy("--cluster-connection=false"), ns(map[string]string{"allowed-secrets.flowauth.io/prefect-worker": "AWS_CREDENTIALS"}),
			"FAIL  namespace flows has allow-lists (allowed-secrets.flowauth.io/prefect-worker), but flowauth runs without a cluster connection", 1},
		{"zero privilege, no allow-list", deploy("--cluster-connection=false"), ns(nil), "", 0},
		{"neither client authentication nor a NetworkPolicy", deploy("--no-client-auth"), ns(nil),
			"warn  Deployment flowauth-system/flowauth: any pod that reaches its Service can post forged reviews", 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			d := &doctor{out: &out, c: fake.NewClientBuilder().WithObjects(tt.deploy, tt.ns).Build(), namespace: "flows", release: "flowauth", relNS: "flowauth-system"}
			d.obj = findInstallation(context.Background(), d.c, d.release, d.relNS)
			d.emulated = &emulated{}
			d.namespacePolicy(context.Background())
			if tt.want == "" && out.Len() > 0 || !strings.Contains(out.String(), tt.want) || d.failed != tt.failed {
				t.Errorf("doctor said (failed %d, want %d):\n%s\nwant a line starting %q", d.failed, tt.failed, out.String(), tt.want)
			}
		})
	}
}

// TestExpiryWarnsAsTheAlertFires: doctor's certificate line warns exactly when
// FlowauthCertificateExpiringSoon fires: less than an eighth of the lifetime left, at most 7 days.
func TestExpiryWarnsAsTheAlertFires(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	for _, tt := range []struct {
		name                string
		issuedAgo, leftFrom time.Duration
		want                status
	}{
		{"a year-long certificate with 300 days left", 65 * day, 300 * day, pass},
		{"a year-long certificate with 3 days left", 362 * day, 3 * day, warn},
		{"a 10-day certificate with 3 days left: renewal not due yet", 7 * day, 3 * day, pass},
		{"a 10-day certificate with a day left", 9 * day, day, warn},
		{"an expired certificate", 400 * day, -day, warn},
	} {
		cert := &x509.Certificate{NotBefore: now.Add(-tt.issuedAgo), NotAfter: now.Add(tt.leftFrom)}
		got, what := expiry(cert, now)
		if got != tt.want || !strings.Contains(what, cert.NotAfter.Format(time.RFC3339)) {
			t.Errorf("%s: %s %q, want %s and the expiry", tt.name, got, what, tt.want)
		}
	}
}

// TestDoctorTrustsNoNetworkPolicyThatAdmitsEveryone: the chart's NetworkPolicy with an empty
// networkPolicy.webhookFrom admits the webhook port from anywhere, so it keeps no forger out;
// one that names its peers does.
func TestDoctorTrustsNoNetworkPolicyThatAdmitsEveryone(t *testing.T) {
	labels := map[string]string{"app.kubernetes.io/name": "flowauth"}
	deploy := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "flowauth", Namespace: "flowauth-system"},
		Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "webhook", Args: []string{"--port=9443"}}}}}}}
	port := intstr.FromInt32(9443)
	policy := func(from []networkingv1.NetworkPolicyPeer) *networkingv1.NetworkPolicy {
		return &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "flowauth", Namespace: "flowauth-system"},
			Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: labels}, PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{{Port: &port}}, From: from}}}}
	}
	for _, tt := range []struct {
		name   string
		policy *networkingv1.NetworkPolicy
		warned bool
	}{
		{"open to all", policy(nil), true},
		{"from the API server's addresses", policy([]networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/24"}}}), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			c := fake.NewClientBuilder().WithObjects(deploy, tt.policy, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "flows"}}).Build()
			d := &doctor{out: &out, c: c, namespace: "flows", release: "flowauth", relNS: "flowauth-system", emulated: &emulated{}}
			d.obj = findInstallation(context.Background(), d.c, d.release, d.relNS)
			d.namespacePolicy(context.Background())
			if got := strings.Contains(out.String(), "forged reviews"); got != tt.warned {
				t.Errorf("warned %v, want %v:\n%s", got, tt.warned, out.String())
			}
		})
	}
}

// TestDoctorChecksTheStatusAgainstItsOwnRender: any pod creator can write flowauth.io/status. On
// the old main doctor said "admitted by flowauth" of whatever the annotation said; it now trusts
// it only when flowauth, run on the pod as stored, writes the same.
func TestDoctorChecksTheStatusAgainstItsOwnRender(t *testing.T) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "flows", Labels: map[string]string{"flowauth.io/injection": "enabled"}}}
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "flowauth"},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{Name: "pods.flowauth.io", NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"flowauth.io/injection": "enabled"}}}}}
	plain := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "run", Namespace: "flows", Annotations: map[string]string{"flowauth.io/secrets": "GITHUB_ACCESS_TOKEN"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "flow", Image: "prefect"}}}}
	// What flowauth stores: its own render of the pod.
	e := &emulated{Cluster: render.Cluster{Map: secretmap.Builtin(), Namespace: "flows"}}
	u, _ := runtime.DefaultUnstructuredConverter.ToUnstructured(&plain)
	u["apiVersion"], u["kind"] = "v1", "Pod"
	r, err := render.Render(context.Background(), u, e.Cluster)
	if err != nil {
		t.Fatal(err)
	}
	var injected corev1.Pod
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(r.Rendered, &injected); err != nil {
		t.Fatal(err)
	}
	forged := plain.DeepCopy()
	forged.Annotations["flowauth.io/status"] = "injected=GITHUB_ACCESS_TOKEN"
	for _, tt := range []struct {
		name string
		pod  *corev1.Pod
		want string
	}{
		{"injected by flowauth", &injected, "ok    pod run was admitted by flowauth"},
		{"status written by its creator", forged, "warn  pod run carries flowauth.io/status"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			c := fake.NewClientBuilder().WithObjects(ns, mwc, tt.pod).Build()
			d := &doctor{out: &out, c: c, namespace: "flows", release: "flowauth", relNS: "flowauth-system", emulated: e}
			d.obj = findInstallation(context.Background(), d.c, d.release, d.relNS)
			if err := d.pod(context.Background(), "run"); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), tt.want) {
				t.Errorf("doctor said:\n%s\nwant a line starting %q", out.String(), tt.want)
			}
		})
	}
}

// TestDoctorUnderstandsPolicyMode (issue 31): with flowauth's admission policies installed and
// no webhook, doctor checks the policies and their bindings (not a Deployment), the namespace
// against the binding's selector, and the allow-list the policies require; with both installed
// it says the switch is unfinished.
func TestDoctorUnderstandsPolicyMode(t *testing.T) {
	compiled := func(o policy.Options) []client.Object {
		p, err := policy.Compile(secretmap.Builtin(), o)
		if err != nil {
			t.Fatal(err)
		}
		return []client.Object{p.Mutating, p.MutatingBinding, p.Validating, p.ValidatingBinding, p.ValidatingJobs, p.ValidatingJobsBinding}
	}
	optedIn := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "flows", Labels: map[string]string{"flowauth.io/injection": "enabled"}}}
	plain := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "flows"}}
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "flowauth"}}
	for _, tt := range []struct {
		name    string
		objs    []client.Object
		want    []string
		failed  int
		without string
	}{
		{"policy mode", append(compiled(policy.Options{}), optedIn), []string{
			"ok    admission policies flowauth-inject (bound, failurePolicy Fail) and flowauth-refuse (Deny)",
			"ok    namespace flows is opted in"}, 0, "Deployment"},
		{"not opted in", append(compiled(policy.Options{}), plain), []string{
			"FAIL  namespace flows is not opted in: the policies' binding does not match its labels"}, 1, "Deployment"},
		{"no binding", append(compiled(policy.Options{})[:1], optedIn), []string{
			"FAIL  MutatingAdmissionPolicy flowauth-inject has no MutatingAdmissionPolicyBinding flowauth-inject",
			"FAIL  no ValidatingAdmissionPolicy flowauth-refuse"}, 2, "Deployment"},
		{"allow-list required", append(compiled(policy.Options{RequireAllowList: true}), optedIn), []string{
			"FAIL  namespace flows has no flowauth.io/allowed-secrets annotation and the policies require one"}, 1, ""},
		{"both while switching", append(compiled(policy.Options{}), optedIn, mwc), []string{
			"warn  both flowauth's admission policies and its webhook flowauth are installed (admission.mode both)",
			"FAIL  Deployment flowauth-system/flowauth"}, 2, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			d := &doctor{out: &out, c: fake.NewClientBuilder().WithObjects(tt.objs...).Build(), namespace: "flows", release: "flowauth", relNS: "flowauth-system", emulated: &emulated{}}
			d.obj = findInstallation(context.Background(), d.c, d.release, d.relNS)
			_ = d.cluster(context.Background())
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("doctor said:\n%s\nwant a line starting %q", out.String(), w)
				}
			}
			if d.failed != tt.failed || (tt.without != "" && strings.Contains(out.String(), tt.without)) {
				t.Errorf("doctor said (failed %d, want %d; nothing of %q):\n%s", d.failed, tt.failed, tt.without, out.String())
			}
		})
	}
}

// TestDoctorExplainsARefusedJob (issue 32, finding 5): a refused pod never exists, so doctor
// job/NAME reads the Job: the FailedCreate its pods got from flowauth (or its policies), and what
// flowauth decides for its template now, with the namespace's allow-list.
func TestDoctorExplainsARefusedJob(t *testing.T) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "flows", Labels: map[string]string{"flowauth.io/injection": "enabled"},
		Annotations: map[string]string{"flowauth.io/allowed-secrets": "GITHUB_ACCESS_TOKEN"}}}
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "held-flow-run", Namespace: "flows"},
		Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{"flowauth.io/secrets": "AWS_CREDENTIALS"}},
			Spec:       corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "flow", Image: "flow:1"}}}}}}
	failed := &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "held-flow-run.1", Namespace: "flows"},
		InvolvedObject: corev1.ObjectReference{Kind: "Job", Name: "held-flow-run", Namespace: "flows"}, Reason: "FailedCreate", Count: 3,
		Message: `Error creating: pods "held-flow-run-x" is forbidden: ValidatingAdmissionPolicy 'flowauth-refuse' with binding 'flowauth-refuse' denied request: flowauth: namespace "flows" does not allow AWS_CREDENTIALS`}
	var out bytes.Buffer
	c := fake.NewClientBuilder().WithObjects(ns, job, failed).Build()
	d := &doctor{out: &out, c: c, namespace: "flows", release: "flowauth", relNS: "flowauth-system"}
	d.obj = findInstallation(context.Background(), d.c, d.release, d.relNS)
	d.emulated = &emulated{}
	d.emulated.Map = secretmap.Builtin()
	d.emulated.Namespace = "flows"
	d.emulated.NamespaceAnnotations = map[string]map[string]string{"flows": ns.Annotations}
	if err := d.job(context.Background(), "held-flow-run"); err != nil {
		t.Fatal(err)
	}
	t.Logf("kubectl flowauth doctor -n flows job/held-flow-run:\n%s", out.String())
	for _, want := range []string{
		"FAIL  job held-flow-run: FailedCreate (x3): Error creating: pods \"held-flow-run-x\" is forbidden",
		"FAIL  job held-flow-run: flowauth refuses its pods now: ",
		"does not allow AWS_CREDENTIALS",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("doctor job/held-flow-run said:\n%s\nwant %q", out.String(), want)
		}
	}
}
