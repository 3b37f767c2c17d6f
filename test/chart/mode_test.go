package chart

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes"

	"github.com/flowauth/flowauth/pkg/policy"
	"github.com/flowauth/flowauth/pkg/secretmap"
)

// servesPolicies is helm template's flag for a cluster that serves MutatingAdmissionPolicy v1.
var servesPolicies = []string{"--api-versions", "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy"}

// TestPolicyModeRendersWhatCompileGives (issue 31): admission.mode=policy renders exactly the
// objects pkg/policy compiles for the same settings (the chart's template is generated from it,
// with the settings left to Helm), and nothing of the webhook: no Deployment, Service, webhook
// configuration, certificate or RBAC.
func TestPolicyModeRendersWhatCompileGives(t *testing.T) {
	tests := []struct {
		name string
		set  []string
		want policy.Options
	}{
		{"defaults", nil, policy.Options{}},
		{"settings", []string{"--set", "policy.requireAllowList=true", "--set", "namespaceDefaults=false", "--set-json", "skipContainers=[\"sidecar\",\"mesh-init\"]",
			"--set", "webhook.namespaceSelector.matchLabels=null", "--set-json", `webhook.namespaceSelector.matchExpressions=[{"key":"team","operator":"In","values":["a","b"]}]`},
			policy.Options{RequireAllowList: true, IgnoreNamespaceDefaults: true, SkipContainers: []string{"sidecar", "mesh-init"},
				NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "team", Operator: metav1.LabelSelectorOpIn, Values: []string{"a", "b"}}}}}},
		{"skip none", []string{"--set-json", "skipContainers=[]"}, policy.Options{SkipContainers: []string{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append(slices.Clone(release), servesPolicies...)
			objs := decode(t, mustHelm(t, append(append(args, "--set", "admission.mode=policy"), tt.set...)...))
			o := tt.want
			o.Name = "flowauth"
			o.ExcludedNamespaces = []string{"flowauth-system", "kube-system"}
			compiled, err := policy.Compile(secretmap.Builtin(), o)
			if err != nil {
				t.Fatal(err)
			}
			rendered := map[string]*unstructured.Unstructured{}
			for _, o := range objs {
				rendered[o.GetKind()+"/"+o.GetName()] = o
			}
			var want []string
			for _, obj := range compiled.Objects() {
				u := toUnstructured(t, obj)
				want = append(want, u.GetKind()+"/"+u.GetName())
			}
			if got := kinds(objs); !cmp.Equal(got, want, cmpopts.SortSlices(func(a, b string) bool { return a < b })) {
				t.Fatalf("policy mode renders %v; want only the policies %v", got, want)
			}
			for _, obj := range compiled.Objects() {
				want := toUnstructured(t, obj)
				got := rendered[want.GetKind()+"/"+want.GetName()]
				if diff := cmp.Diff(want.Object["spec"], got.Object["spec"]); diff != "" {
					t.Errorf("%s: the chart renders a spec other than pkg/policy's (-compiled +chart):\n%s", want.GetName(), diff)
				}
			}
		})
	}
}

func toUnstructured(t *testing.T, obj any) *unstructured.Unstructured {
	t.Helper()
	b, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{}
	if err := json.Unmarshal(b, &u.Object); err != nil {
		t.Fatal(err)
	}
	return u
}

// TestBothModeKeepsTheWebhookAsASecondPass: admission.mode=both (the step between the modes)
// renders the policies and the webhook, whose failurePolicy is Ignore: its pods may be starting
// or stopping while the policies inject.
func TestBothModeKeepsTheWebhookAsASecondPass(t *testing.T) {
	objs := decode(t, mustHelm(t, append(append(slices.Clone(release), servesPolicies...), "--set", "admission.mode=both")...))
	find(t, objs, "MutatingAdmissionPolicy")
	find(t, objs, "Deployment")
	for _, kind := range []string{"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"} {
		for _, w := range find(t, objs, kind).Object["webhooks"].([]any) {
			if fp := w.(map[string]any)["failurePolicy"]; fp != "Ignore" {
				t.Errorf("%s %v: failurePolicy %v in mode both; want Ignore", kind, w.(map[string]any)["name"], fp)
			}
		}
	}
}

// TestAdmissionModeOnThisServer: installed against the suite's API server (each minor of make
// test-versions), auto picks policy exactly where MutatingAdmissionPolicy v1 is served, and policy
// is refused elsewhere with a message that names the cluster's version.
func TestAdmissionModeOnThisServer(t *testing.T) {
	gitVersion, served := servedHere(t)
	version := struct{ GitVersion string }{gitVersion}
	// helm template --validate asks the API server for its capabilities, as helm install does.
	render := func(mode string) (string, string, error) {
		return helm("template", "flowauth", "charts/flowauth", "--namespace", "flowauth-system", "--validate", "--set", "admission.mode="+mode)
	}
	out, stderr, err := render("auto")
	if err != nil {
		t.Fatalf("auto on %s: %v\n%s", version.GitVersion, err, stderr)
	}
	autoPolicy := strings.Contains(out, "kind: MutatingAdmissionPolicy\n")
	if autoPolicy != served || strings.Contains(out, "kind: Deployment\n") == served {
		t.Errorf("on %s (MutatingAdmissionPolicy v1 served: %v), auto rendered the policies: %v", version.GitVersion, served, autoPolicy)
	}
	_, stderr, err = render("policy")
	switch {
	case served && err != nil:
		t.Errorf("policy on %s: %v\n%s", version.GitVersion, err, stderr)
	case !served && err == nil:
		t.Errorf("policy on %s, which serves no MutatingAdmissionPolicy v1, rendered", version.GitVersion)
	case !served && !strings.Contains(stderr, "admission.mode=policy needs MutatingAdmissionPolicy in admissionregistration.k8s.io/v1, which Kubernetes serves from 1.36; this cluster is "+version.GitVersion):
		t.Errorf("policy on %s: %s\nwant the version named", version.GitVersion, stderr)
	}
	t.Logf("%s: MutatingAdmissionPolicy v1 served: %v", version.GitVersion, served)
}

// TestPolicyModeInstallServesWithNoWebhook: helm install with admission.mode=policy on the
// suite's 1.37 API server is a working install with no process of flowauth's: a flow-run pod of
// an opted-in namespace is stored with its credentials, a bad one is refused with flowauth's
// message, and helm uninstall takes it all away.
func TestPolicyModeInstallServesWithNoWebhook(t *testing.T) {
	ctx := context.Background()
	if version, served := servedHere(t); !served {
		// make test-versions' older minors: refused, naming the version.
		_, stderr, err := helm("install", "flowauth", "charts/flowauth", "--namespace", "flowauth-policy", "--create-namespace", "--set", "admission.mode=policy")
		if err == nil || !strings.Contains(stderr, "which Kubernetes serves from 1.36; this cluster is "+version) {
			t.Fatalf("helm install in policy mode on %s: %v\n%s\nwant it refused, naming the version", version, err, stderr)
		}
		return
	}
	out := mustHelm(t, "install", "flowauth", "charts/flowauth", "--namespace", "flowauth-policy", "--create-namespace", "--set", "admission.mode=policy")
	uninstalled := false
	t.Cleanup(func() {
		if !uninstalled {
			_, _, _ = helm("uninstall", "flowauth", "--namespace", "flowauth-policy")
		}
	})
	if !strings.Contains(out, "the API server injects flow-run pods itself, no webhook runs") {
		t.Errorf("helm install's NOTES do not say policy mode:\n%s", out)
	}
	if got := kubectl(t, "get", "deployments,services,mutatingwebhookconfigurations,validatingwebhookconfigurations", "-A", "-l", "app.kubernetes.io/instance=flowauth", "-o", "name"); strings.TrimSpace(got) != "" {
		t.Errorf("policy mode installed parts of the webhook:\n%s", got)
	}
	cs, err := kubernetes.NewForConfig(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "policy-mode-flows", Labels: map[string]string{"flowauth.io/injection": "enabled"}}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cs.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{}) })
	pod := func(names string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "flow-run-", Annotations: map[string]string{"flowauth.io/secrets": names}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "prefect-job", Image: "flow:1"}}},
		}
	}
	const want = "PREFECT__CONTEXT__SECRETS__GITHUB_ACCESS_TOKEN"
	var stored *corev1.Pod
	// The API server loads a new policy within about a second of its creation.
	deadline := time.Now().Add(30 * time.Second)
	for {
		stored, err = cs.CoreV1().Pods(ns.Name).Create(ctx, pod("GITHUB_ACCESS_TOKEN"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			t.Fatal(err)
		}
		if len(stored.Spec.Containers[0].Env) > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	stored, err = cs.CoreV1().Pods(ns.Name).Create(ctx, pod("GITHUB_ACCESS_TOKEN"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	env := stored.Spec.Containers[0].Env
	if len(env) == 0 || env[0].Name != want || env[0].ValueFrom == nil || env[0].ValueFrom.SecretKeyRef == nil || env[0].ValueFrom.SecretKeyRef.Name != "github-access-token" {
		t.Errorf("stored pod's env %+v; want %s from Secret github-access-token", env, want)
	}
	if s := stored.Annotations["flowauth.io/status"]; s != "injected=GITHUB_ACCESS_TOKEN" {
		t.Errorf("flowauth.io/status = %q", s)
	}
	// The validating policy loads on its own, a moment after the mutating one may have.
	deadline = time.Now().Add(30 * time.Second)
	for {
		_, err = cs.CoreV1().Pods(ns.Name).Create(ctx, pod("github token"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	_, err = cs.CoreV1().Pods(ns.Name).Create(ctx, pod("github token"), metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), "flowauth: annotation flowauth.io/secrets: entry \"github\"") {
		t.Errorf("a bad name: %v; want flowauth's refusal", err)
	}
	// kubectl flowauth doctor understands policy mode (the plugin, run as a user runs it).
	doctor := exec.CommandContext(ctx, "go", "run", "./cmd/kubectl-flowauth", "doctor", "-n", ns.Name, "--release", "flowauth", "--release-namespace", "flowauth-policy", "--kubeconfig", cluster.Kubeconfig)
	doctor.Dir = root
	report, err := doctor.CombinedOutput()
	t.Logf("kubectl flowauth doctor -n %s:\n%s", ns.Name, report)
	for _, want := range []string{"ok    admission policies flowauth-inject (bound, failurePolicy Fail) and flowauth-refuse (Deny)", "ok    namespace policy-mode-flows is opted in", "0 failed"} {
		if err != nil || !strings.Contains(string(report), want) {
			t.Errorf("doctor (%v) lacks %q", err, want)
		}
	}
	mustHelm(t, "uninstall", "flowauth", "--namespace", "flowauth-policy", "--wait")
	uninstalled = true
	if got := kubectl(t, "get", "mutatingadmissionpolicies,validatingadmissionpolicies,mutatingadmissionpolicybindings,validatingadmissionpolicybindings", "-l", "app.kubernetes.io/instance=flowauth", "-o", "name"); strings.TrimSpace(got) != "" {
		t.Errorf("helm uninstall left:\n%s", got)
	}
}

// TestDirectSwitchIsRefused: helm upgrade straight from the webhook to the policies, or back,
// is refused with the way through admission.mode both (test/node/multinode measures what a
// direct switch loses); through both, each step is accepted.
func TestDirectSwitchIsRefused(t *testing.T) {
	release := []string{"switch", "charts/flowauth", "--namespace", "flowauth-switch"}
	mustHelm(t, append([]string{"install", "--create-namespace"}, release...)...)
	t.Cleanup(func() { _, _, _ = helm("uninstall", "switch", "--namespace", "flowauth-switch") })
	for _, step := range []struct {
		mode, refusal string
	}{
		{"policy", "admission.mode=policy straight from the webhook: flow runs created while the API server loads the policies would start without their credentials. Upgrade to admission.mode=both first"},
		{"both", ""},
		{"policy", ""},
		{"webhook", "admission.mode=webhook straight from the policies: flow runs created while the webhook's pods start would be refused. Upgrade to admission.mode=both first"},
		{"both", ""},
		{"webhook", ""},
	} {
		_, stderr, err := helm(append(append([]string{"upgrade"}, release...), "--reuse-values", "--set", "admission.mode="+step.mode)...)
		switch {
		case step.refusal == "" && err != nil:
			t.Fatalf("upgrade to %s: %v\n%s", step.mode, err, stderr)
		case step.refusal != "" && (err == nil || !strings.Contains(stderr, step.refusal)):
			t.Fatalf("upgrade straight to %s: %v\n%s\nwant it refused: %q", step.mode, err, stderr, step.refusal)
		}
	}
}

// servedHere is the API server's version and whether it serves MutatingAdmissionPolicy v1.
func servedHere(t *testing.T) (string, bool) {
	t.Helper()
	dc, err := discovery.NewDiscoveryClientForConfig(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	version, err := dc.ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	served := false
	if list, err := dc.ServerResourcesForGroupVersion("admissionregistration.k8s.io/v1"); err == nil {
		for _, r := range list.APIResources {
			served = served || r.Kind == "MutatingAdmissionPolicy"
		}
	}
	return version.GitVersion, served
}

// TestProductionValuesInstall (issue 32): docs/production.md's values block installs as written
// (every value exists and fits the schema) and renders what the checklist says it sets.
func TestProductionValuesInstall(t *testing.T) {
	page, err := os.ReadFile(filepath.Join(root, "docs", "production.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(page), "<!-- production values -->\n```yaml\n")
	if !ok {
		t.Fatal("docs/production.md has no production values block")
	}
	block, _, _ := strings.Cut(rest, "```")
	values := filepath.Join(t.TempDir(), "production.yaml")
	if err := os.WriteFile(values, []byte(block), 0o600); err != nil { //nolint:gosec // the test's temporary folder
		t.Fatal(err)
	}
	installCRDs(t)
	out := mustHelm(t, "install", "prod", "charts/flowauth", "--namespace", "flowauth-prod", "--create-namespace", "-f", values)
	t.Cleanup(func() { _, _, _ = helm("uninstall", "prod", "--namespace", "flowauth-prod") })
	if strings.Contains(out, "can post admission reviews") {
		t.Errorf("with webhook.clientAuth set, the NOTES still warn that any pod can post reviews:\n%s", out)
	}
	deploy := kubectl(t, "-n", "flowauth-prod", "get", "deployment", "prod-flowauth", "-o", "jsonpath={.spec.replicas} {.spec.template.spec.priorityClassName}")
	if deploy != "3 system-cluster-critical" {
		t.Errorf("the production values give the Deployment %q; want 3 replicas and system-cluster-critical", deploy)
	}
	for _, kind := range []string{"servicemonitor", "prometheusrule"} {
		kubectl(t, "-n", "flowauth-prod", "get", kind, "prod-flowauth")
	}
}
