package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flowauth/flowauth/pkg/mutate"
	"github.com/flowauth/flowauth/pkg/render"
)

// The chart's match condition: the API server sends flowauth flow-run pods only.
const matchConditionName = "flow-run-pods-only"

// recentJobs is how many of the namespace's newest Jobs doctor checks the declared names of.
const recentJobs = 20

type doctor struct {
	flags          *genericclioptions.ConfigFlags
	out            io.Writer
	c              client.Client
	namespace      string
	release, relNS string
	// obj names what doctor checks (findInstallation).
	obj              installation
	failed, warnings int
	// namedChart: a fix printed names CHART, which the summary explains.
	namedChart bool
	emulated   *emulated
}

type status string

const (
	pass status = "ok"
	warn status = "warn"
	fail status = "FAIL"
)

// report prints one check: its status, what was found, and for anything not ok, the fix.
func (d *doctor) report(s status, what, fix string) {
	fprintf(d.out, "%-5s %s\n", s, what)
	if s != pass && fix != "" {
		fprintf(d.out, "      fix: %s\n", fix)
		d.namedChart = d.namedChart || strings.Contains(fix, " CHART ")
	}
	switch s {
	case fail:
		d.failed++
	case warn:
		d.warnings++
	}
}

func newDoctorCommand(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	o := &clusterOptions{}
	cmd := &cobra.Command{
		Use:   "doctor [pod/NAME | job/NAME]",
		Short: "Check a live cluster's flowauth, the namespace, and its flow runs' Secrets; or explain one pod",
		Long: `Check, read-only, one line per check with ok, warn or FAIL and the fix:
  - the webhook configurations exist, with the chart's failurePolicy and matchConditions;
  - replicas are ready;
  - the caBundle verifies the serving certificate (the Secret's, and the one a replica serves);
  - the namespace (-n) is opted in (the webhook's namespaceSelector matches it);
  - its allow-lists are enforced (FAIL with --cluster-connection=false), and the webhook port is
    guarded by client authentication or a NetworkPolicy naming its peers (warn if neither);
  - each name declared by the namespace's defaults or by its newest Jobs has its Secret and keys.
In policy mode (flowauth's admission policies, Kubernetes 1.36+) the policies and their bindings
are checked instead of the webhook: bound, denying, failing closed, the map this plugin holds, the
namespace matched by the binding's selector, the allow-list the policies require.

With pod/NAME: was the pod sent to flowauth, whether its flowauth.io/status is flowauth's (flowauth
run on the stored pod changes nothing), and what it lacks.
With job/NAME, for a flow run whose pod was refused and so never exists: what flowauth (or its
policies) recorded on the Job (FailedCreate, Flowauth* Events), and what it decides for the Job's
pod template now.
Exit code 1 when a check fails.`,
		Example: `  kubectl flowauth doctor -n flows
  kubectl flowauth doctor -n flows pod/prefect-job-3c1b2a9f-x7k2p
  kubectl flowauth doctor -n flows job/prefect-job-3c1b2a9f`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(flags)
			if err != nil {
				return err
			}
			ns, _, err := flags.ToRawKubeConfigLoader().Namespace()
			if err != nil || ns == "" {
				ns = "default"
			}
			o.fromCluster = true
			e, err := o.cluster(cmd.Context(), flags, nil)
			if err != nil {
				return err
			}
			d := &doctor{flags: flags, out: streams.Out, c: c, namespace: ns, release: o.release, emulated: e}
			d.obj = findInstallation(cmd.Context(), c, o.release, o.releaseNamespace)
			d.relNS = d.obj.namespace
			if len(args) == 1 {
				if name, ok := strings.CutPrefix(args[0], "pod/"); ok {
					err = d.pod(cmd.Context(), name)
				} else if name, ok := strings.CutPrefix(args[0], "job/"); ok {
					err = d.job(cmd.Context(), name)
				} else {
					return fmt.Errorf("doctor takes pod/NAME or job/NAME, not %q", args[0])
				}
			} else {
				err = d.cluster(cmd.Context())
			}
			if err != nil {
				return err
			}
			if d.namedChart {
				fprintf(streams.Out, "CHART: the chart this release was installed from, at its version: oci://REGISTRY/charts/flowauth@sha256:CHART_DIGEST from the release's notes, or charts/flowauth of the same checkout (a checkout of another version would upgrade flowauth too)\n")
			}
			fprintf(streams.ErrOut, "%d failed, %d warnings\n", d.failed, d.warnings)
			if d.failed > 0 {
				return exitError{1}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&o.release, "release", "flowauth", "the Helm release; its objects are named as the chart names them (RELEASE if it holds \"flowauth\", else RELEASE-flowauth; the policies NAME-inject, NAME-refuse), and an install named otherwise (kustomize) is found by its pod webhook")
	cmd.Flags().StringVar(&o.releaseNamespace, "release-namespace", "flowauth-system", "the namespace flowauth is installed in")
	return cmd
}

// cluster runs every check of the installation and the namespace.
func (d *doctor) cluster(ctx context.Context) error {
	policies := d.findPolicies(ctx)
	var webhook bool
	if policies != nil {
		// admission.mode policy, or both while switching: the webhook is checked too if it is there.
		var mwc admissionregistrationv1.MutatingWebhookConfiguration
		webhook = d.c.Get(ctx, types.NamespacedName{Name: d.obj.config}, &mwc) == nil
		if webhook {
			d.report(warn, fmt.Sprintf("both flowauth's admission policies and its webhook %s are installed (admission.mode both): right while switching modes, not to keep", d.obj.config),
				fmt.Sprintf("finish the switch: helm upgrade %s CHART -n %s --reuse-values --set admission.mode=policy (or webhook)", d.release, d.relNS))
		}
		if sel := d.policies(ctx, policies); sel != nil {
			d.namespaceOptedIn(ctx, sel, "the policies' binding")
		}
		d.policyAllowList(ctx, policies)
	}
	if policies == nil || webhook {
		mwc := d.webhookConfigurations(ctx)
		d.replicas(ctx)
		var sel *metav1.LabelSelector
		if mwc != nil {
			d.caBundle(ctx, mwc)
			sel = mwc.NamespaceSelector
		}
		if d.namespaceOptedIn(ctx, sel, "the webhook's namespaceSelector") {
			d.reachable(ctx)
		}
		d.namespacePolicy(ctx)
	}
	if err := d.declaredNames(ctx); err != nil {
		return err
	}
	return d.changedCredentials(ctx)
}

// changedCredentials reports running flow-run pods whose injected Secrets changed after their
// containers started (docs/reference.md, "When a Secret changes"): env values are fixed when a container
// starts, so such a run still holds the old credentials in its environment; mounted files follow
// the Secret. It reads Secrets' metadata only (when each was last written), never a value.
func (d *doctor) changedCredentials(ctx context.Context) error {
	var pods corev1.PodList
	if err := d.c.List(ctx, &pods, client.InNamespace(d.namespace)); err != nil {
		return fmt.Errorf("listing pods in %s: %w", d.namespace, err)
	}
	secrets := &metav1.PartialObjectMetadataList{}
	secrets.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("SecretList"))
	if err := d.c.List(ctx, secrets, client.InNamespace(d.namespace)); err != nil {
		return fmt.Errorf("listing Secrets' metadata in %s: %w", d.namespace, err)
	}
	changed := map[string]time.Time{}
	for _, s := range secrets.Items {
		changed[s.Name] = lastWritten(s.ObjectMeta)
	}
	running, stale := 0, 0
	for i := range pods.Items {
		pod := &pods.Items[i]
		status := pod.Annotations[mutate.AnnotationStatus]
		if pod.Status.Phase != corev1.PodRunning || !strings.HasPrefix(status, "injected=") {
			continue
		}
		running++
		for _, use := range d.injectedSecrets(pod, status) {
			at, ok := changed[use.secret]
			if !ok || !at.After(use.started) {
				continue
			}
			stale++
			var how []string
			if use.env {
				how = append(how, "its env keeps the old value")
			}
			if use.file {
				how = append(how, "its mounted file follows the Secret within the kubelet's sync period")
			}
			d.report(warn, fmt.Sprintf("pod %s: container %s started with an older %s (Secret %s changed %s after it started): %s; a new run picks up the change",
				pod.Name, use.container, use.name, use.secret, at.Sub(use.started).Round(time.Second), strings.Join(how, "; ")),
				fmt.Sprintf("if the run must use the new credentials now: kubectl delete pod %s -n %s (its Job starts a new one), or let it finish", pod.Name, d.namespace))
		}
	}
	if running > 0 && stale == 0 {
		d.report(pass, fmt.Sprintf("%d running flow-run pods, none started before a change of its Secrets", running), "")
	}
	return nil
}

// lastWritten is when an object was last written: the newest of its managed fields' times, or
// its creation.
func lastWritten(m metav1.ObjectMeta) time.Time {
	t := m.CreationTimestamp.Time
	for _, f := range m.ManagedFields {
		if f.Time != nil && f.Time.After(t) {
			t = f.Time.Time
		}
	}
	return t
}

// secretUse is one declared name's Secret as one running container holds it.
type secretUse struct {
	container, name, secret string
	started                 time.Time
	// env and file say how the container reads it.
	env, file bool
}

// injectedSecrets lists, for each running container that references a declared name's Secret,
// the name, the Secret and when the container started.
func (d *doctor) injectedSecrets(pod *corev1.Pod, status string) []secretUse {
	started := map[string]time.Time{}
	for _, cs := range append(slices.Clone(pod.Status.InitContainerStatuses), pod.Status.ContainerStatuses...) {
		if cs.State.Running != nil {
			started[cs.Name] = cs.State.Running.StartedAt.Time
		}
	}
	injected, _, _ := strings.Cut(strings.TrimPrefix(status, "injected="), ";")
	var uses []secretUse
	for _, name := range strings.Split(injected, ",") {
		entry, _ := d.emulated.Map.Resolve(name)
		secret := entry.SecretName
		if s, ok := pod.Annotations[mutate.SecretOverridePrefix+name]; ok {
			secret = s
		}
		for _, c := range append(slices.Clone(pod.Spec.InitContainers), pod.Spec.Containers...) {
			at, running := started[c.Name]
			env, file := references(pod, &c, secret)
			if running && (env || file) {
				uses = append(uses, secretUse{container: c.Name, name: name, secret: secret, started: at, env: env, file: file})
			}
		}
	}
	return uses
}

// references reports whether the container reads the Secret through an env var, a mount, or both.
func references(pod *corev1.Pod, c *corev1.Container, secret string) (env, file bool) {
	for _, e := range c.Env {
		env = env || e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name == secret
	}
	for _, m := range c.VolumeMounts {
		for _, v := range pod.Spec.Volumes {
			file = file || v.Name == m.Name && v.Secret != nil && v.Secret.SecretName == secret
		}
	}
	return env, file
}

func (d *doctor) webhookConfigurations(ctx context.Context) *admissionregistrationv1.MutatingWebhook {
	install := fmt.Sprintf("helm install %s charts/flowauth -n %s --create-namespace", d.release, d.relNS)
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	if err := d.c.Get(ctx, types.NamespacedName{Name: d.obj.config}, &mwc); err != nil || len(mwc.Webhooks) == 0 {
		d.report(fail, fmt.Sprintf("MutatingWebhookConfiguration %s: %v", d.obj.config, orMissing(err)), install)
		return nil
	}
	w := &mwc.Webhooks[0]
	var vwc admissionregistrationv1.ValidatingWebhookConfiguration
	if err := d.c.Get(ctx, types.NamespacedName{Name: d.obj.config}, &vwc); err != nil {
		d.report(warn, fmt.Sprintf("ValidatingWebhookConfiguration %s: %v: kubectl apply of flow-run Jobs gets no warnings", d.obj.config, orMissing(err)), install)
	}
	policy := admissionregistrationv1.Fail
	if w.FailurePolicy != nil {
		policy = *w.FailurePolicy
	}
	hasCondition := slices.ContainsFunc(w.MatchConditions, func(m admissionregistrationv1.MatchCondition) bool {
		return m.Name == matchConditionName && strings.Contains(m.Expression, mutate.AnnotationSecrets) &&
			strings.Contains(m.Expression, mutate.LabelFlowRunIDPrefect1) && strings.Contains(m.Expression, mutate.LabelFlowRunIDPrefect2)
	})
	switch {
	case !hasCondition:
		d.report(fail, fmt.Sprintf("MutatingWebhookConfiguration %s: no matchCondition %s: the API server sends flowauth every pod of opted-in namespaces", d.obj.config, matchConditionName),
			fmt.Sprintf("helm upgrade %s CHART -n %s --reuse-values (the chart sets it)", d.release, d.relNS))
	case policy == admissionregistrationv1.Ignore:
		d.report(warn, fmt.Sprintf("MutatingWebhookConfiguration %s: failurePolicy Ignore: while flowauth is unreachable, flow runs start without their credentials", d.obj.config),
			fmt.Sprintf("helm upgrade %s CHART -n %s --reuse-values --set webhook.failurePolicy=Fail", d.release, d.relNS))
	default:
		d.report(pass, fmt.Sprintf("MutatingWebhookConfiguration %s: failurePolicy %s, matchCondition %s", d.obj.config, policy, matchConditionName), "")
	}
	return w
}

func (d *doctor) replicas(ctx context.Context) {
	var deploy appsv1.Deployment
	if err := d.c.Get(ctx, types.NamespacedName{Namespace: d.relNS, Name: d.obj.deployment}, &deploy); err != nil {
		d.report(fail, fmt.Sprintf("Deployment %s/%s: %v", d.relNS, d.obj.deployment, orMissing(err)), fmt.Sprintf("helm install %s charts/flowauth -n %s --create-namespace", d.release, d.relNS))
		return
	}
	want := int32(1)
	if deploy.Spec.Replicas != nil {
		want = *deploy.Spec.Replicas
	}
	what := fmt.Sprintf("Deployment %s/%s: %d of %d replicas ready", d.relNS, d.obj.deployment, deploy.Status.ReadyReplicas, want)
	fix := fmt.Sprintf("kubectl -n %s describe deployment/%s; kubectl -n %s logs deployment/%s", d.relNS, d.obj.deployment, d.relNS, d.obj.deployment)
	switch {
	case deploy.Status.ReadyReplicas == 0:
		d.report(fail, what+": no flow-run pod can be admitted (failurePolicy Fail) or injected (Ignore)", fix)
	case deploy.Status.ReadyReplicas < want:
		d.report(warn, what, fix)
	default:
		d.report(pass, what, "")
	}
}

// caBundle verifies the serving certificate against the configuration's caBundle, as the API
// server does: the one in the Deployment's certificate Secret, and the one a ready replica serves.
func (d *doctor) caBundle(ctx context.Context, w *admissionregistrationv1.MutatingWebhook) {
	pool := x509.NewCertPool()
	if len(w.ClientConfig.CABundle) == 0 || !pool.AppendCertsFromPEM(w.ClientConfig.CABundle) {
		d.report(fail, "caBundle: empty: the API server cannot trust flowauth", fmt.Sprintf("kubectl -n %s logs deployment/%s (self-managed TLS injects it at start)", d.relNS, d.obj.deployment))
		return
	}
	dnsName := d.obj.service + "." + d.relNS + ".svc"
	if s := w.ClientConfig.Service; s != nil {
		dnsName = s.Name + "." + s.Namespace + ".svc"
	}
	fix := fmt.Sprintf("kubectl -n %s rollout restart deployment/%s (self-managed TLS re-injects the CA), or check the cert-manager Certificate", d.relNS, d.obj.deployment)
	secret := d.certSecretName(ctx)
	var s corev1.Secret
	if secret != "" {
		if err := d.c.Get(ctx, types.NamespacedName{Namespace: d.relNS, Name: secret}, &s); err != nil {
			d.report(fail, fmt.Sprintf("serving certificate Secret %s/%s: %v", d.relNS, secret, orMissing(err)), fix)
		} else if err := verify(s.Data["tls.crt"], pool, dnsName); err != nil {
			d.report(fail, fmt.Sprintf("caBundle does not verify the certificate in Secret %s/%s for %s: %v", d.relNS, secret, dnsName, err), fix)
		} else {
			d.report(pass, fmt.Sprintf("caBundle verifies the certificate in Secret %s/%s for %s", d.relNS, secret, dnsName), "")
		}
	}
	served, pod, err := d.servedCertificate(ctx)
	switch {
	case err != nil:
		d.report(warn, "could not see the certificate a replica serves: "+err.Error(), "")
	case verify(served, pool, dnsName) != nil:
		d.report(fail, fmt.Sprintf("caBundle does not verify the certificate pod %s serves: %v", pod, verify(served, pool, dnsName)), fix)
	default:
		d.report(pass, fmt.Sprintf("caBundle verifies the certificate pod %s serves", pod), "")
		leaf, _ := parseLeaf(served) // verify parsed it already
		st, what := expiry(leaf, time.Now())
		d.report(st, fmt.Sprintf("the certificate pod %s serves %s", pod, what), fmt.Sprintf(
			"self-managed TLS: kubectl -n %s logs deployment/%s --tail=-1 | grep cert-rotation; cert-manager: kubectl -n %s describe certificate; your own (certs.secretName): replace tls.crt and tls.key in Secret %s/%s",
			d.relNS, d.obj.deployment, d.relNS, d.relNS, secret))
	}
}

// expiry says when a serving certificate expires, and warns as FlowauthCertificateExpiringSoon
// fires: with less than an eighth of its lifetime left (at most 7 days), past any renewal.
func expiry(cert *x509.Certificate, now time.Time) (status, string) {
	left := cert.NotAfter.Sub(now)
	when := fmt.Sprintf("expires in %s (%s)", left.Round(time.Minute), cert.NotAfter.UTC().Format(time.RFC3339))
	if left < min(7*24*time.Hour, cert.NotAfter.Sub(cert.NotBefore)/8) {
		return warn, when + ": past its renewal, which is failing or, for a certificate you provide, due"
	}
	return pass, when
}

func (d *doctor) certSecretName(ctx context.Context) string {
	var deploy appsv1.Deployment
	if err := d.c.Get(ctx, types.NamespacedName{Namespace: d.relNS, Name: d.obj.deployment}, &deploy); err != nil {
		return ""
	}
	for _, v := range deploy.Spec.Template.Spec.Volumes {
		if v.Name == "certs" && v.Secret != nil {
			return v.Secret.SecretName
		}
	}
	return ""
}

func verify(certPEM []byte, pool *x509.CertPool, dnsName string) error {
	cert, err := parseLeaf(certPEM)
	if err != nil {
		return err
	}
	_, err = cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: dnsName})
	return err
}

// servedCertificate port-forwards to a ready replica's webhook port and returns the certificate
// it presents in a TLS handshake (PEM).
func (d *doctor) servedCertificate(ctx context.Context) ([]byte, string, error) {
	var pods corev1.PodList
	if err := d.c.List(ctx, &pods, client.InNamespace(d.relNS), client.MatchingLabelsSelector{Selector: d.obj.pods}); err != nil {
		return nil, "", err
	}
	var pod *corev1.Pod
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.DeletionTimestamp == nil && slices.ContainsFunc(p.Status.Conditions, func(c corev1.PodCondition) bool { return c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue }) {
			pod = p
			break
		}
	}
	if pod == nil {
		return nil, "", errors.New("no ready replica")
	}
	port := int32(9443)
	for _, p := range pod.Spec.Containers[0].Ports {
		if p.Name == "webhook" {
			port = p.ContainerPort
		}
	}
	cfg, err := d.flags.ToRESTConfig()
	if err != nil {
		return nil, "", err
	}
	transport, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		return nil, "", err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, "", err
	}
	u := cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(pod.Namespace).Name(pod.Name).SubResource("portforward").URL()
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, u)
	stop, ready := make(chan struct{}), make(chan struct{})
	defer close(stop)
	fw, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{"0:" + strconv.Itoa(int(port))}, stop, ready, io.Discard, io.Discard)
	if err != nil {
		return nil, "", err
	}
	errs := make(chan error, 1)
	go func() { errs <- fw.ForwardPorts() }()
	select {
	case <-ready:
	case err := <-errs:
		return nil, "", fmt.Errorf("port-forward to %s: %w", pod.Name, err)
	case <-time.After(15 * time.Second):
		return nil, "", fmt.Errorf("port-forward to %s: not ready after 15s", pod.Name)
	}
	ports, err := fw.GetPorts()
	if err != nil || len(ports) == 0 {
		return nil, "", fmt.Errorf("port-forward to %s: %w", pod.Name, err)
	}
	var seen []byte
	conf := &tls.Config{
		InsecureSkipVerify: true, //nolint:gosec // the certificate is verified below, against the caBundle, as the API server does
		MinVersion:         tls.VersionTLS12,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) > 0 {
				seen = pemBlock(cs.PeerCertificates[0].Raw)
			}
			return nil
		},
	}
	tlsDialer := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: conf}
	conn, err := tlsDialer.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(ports[0].Local))))
	if err != nil {
		return nil, "", fmt.Errorf("TLS handshake with %s: %w", pod.Name, err)
	}
	_ = conn.Close()
	return seen, pod.Name, nil
}

// namespaceOptedIn reports whether the webhook serves the namespace, and says so.
func (d *doctor) namespaceOptedIn(ctx context.Context, selector *metav1.LabelSelector, whose string) bool {
	var ns corev1.Namespace
	if err := d.c.Get(ctx, types.NamespacedName{Name: d.namespace}, &ns); err != nil {
		d.report(fail, fmt.Sprintf("namespace %s: %v", d.namespace, orMissing(err)), "kubectl create namespace "+d.namespace)
		return false
	}
	if selector == nil {
		return false
	}
	if ok, err := selects(selector, ns.Labels); err != nil || !ok {
		d.report(fail, fmt.Sprintf("namespace %s is not opted in: %s does not match its labels, so flowauth never sees its pods", d.namespace, whose),
			fmt.Sprintf("kubectl label namespace %s flowauth.io/injection=enabled", d.namespace))
		return false
	}
	d.report(pass, fmt.Sprintf("namespace %s is opted in", d.namespace), "")
	return true
}

// namespacePolicy reports, from the webhook's Deployment arguments, whether the namespace's
// Secrets are checked at all (key lookup limited to --secret-lookup-namespaces leaves the others
// unchecked: the webhook says so at apply time) and whether its administrator's allow-list is in
// place when the webhook requires one.
func (d *doctor) namespacePolicy(ctx context.Context) {
	var deploy appsv1.Deployment
	if err := d.c.Get(ctx, types.NamespacedName{Namespace: d.relNS, Name: d.obj.deployment}, &deploy); err != nil || len(deploy.Spec.Template.Spec.Containers) == 0 {
		return // replicas() has said why
	}
	var keys, requireList, clientAuth bool
	connected := true
	var watched []string
	webhookPort := 9443
	for _, a := range deploy.Spec.Template.Spec.Containers[0].Args {
		switch {
		case a == "--cluster-connection=false":
			connected = false
		case strings.HasPrefix(a, "--client-ca-file="):
			clientAuth = true
		case strings.HasPrefix(a, "--port="):
			if p, err := strconv.Atoi(strings.TrimPrefix(a, "--port=")); err == nil {
				webhookPort = p
			}
		case a == "--secret-lookup=keys":
			keys = true
		case a == "--require-allow-list" || a == "--require-allow-list=true":
			requireList = true
		case strings.HasPrefix(a, "--secret-lookup-namespaces="):
			watched = strings.Split(strings.TrimPrefix(a, "--secret-lookup-namespaces="), ",")
		}
	}
	if keys && len(watched) > 0 && !slices.Contains(watched, d.namespace) {
		d.report(warn, fmt.Sprintf("namespace %s is not in the webhook's secretLookupNamespaces (%s): flowauth cannot see its Secrets, so a missing Secret or key there is found only when the pod starts (CreateContainerConfigError)", d.namespace, strings.Join(watched, ",")),
			fmt.Sprintf("helm upgrade %s CHART -n %s --reuse-values --set 'secretLookupNamespaces={%s,%s}'", d.release, d.relNS, strings.Join(watched, ","), d.namespace))
	}
	if !clientAuth && !d.webhookPortRestricted(ctx, &deploy, webhookPort) {
		d.report(warn, fmt.Sprintf("Deployment %s/%s: any pod that reaches its Service can post forged reviews (no client authentication, no NetworkPolicy restricting the webhook port): it learns whether Secrets exist in opted-in namespaces and what their allow-lists say", d.relNS, d.obj.deployment),
			fmt.Sprintf("on a multi-tenant cluster, set webhook.clientAuth (docs/security.md) or networkPolicy.enabled with networkPolicy.webhookFrom naming the API server's addresses: helm upgrade %s CHART -n %s --reuse-values --set networkPolicy.enabled=true", d.release, d.relNS))
	}
	var ns corev1.Namespace
	if err := d.c.Get(ctx, types.NamespacedName{Name: d.namespace}, &ns); err != nil {
		return
	}
	list, has := ns.Annotations[mutate.AnnotationAllowedSecrets]
	if !connected {
		var lists []string
		for k := range ns.Annotations {
			if k == mutate.AnnotationAllowedSecrets || strings.HasPrefix(k, mutate.AllowedSecretsForPrefix) {
				lists = append(lists, k)
			}
		}
		slices.Sort(lists)
		if len(lists) > 0 {
			d.report(fail, fmt.Sprintf("namespace %s has allow-lists (%s), but flowauth runs without a cluster connection (--cluster-connection=false, the chart's clusterConnection: false): it never reads them, so they are NOT enforced", d.namespace, strings.Join(lists, ", ")),
				fmt.Sprintf("helm upgrade %s CHART -n %s --reuse-values --set clusterConnection=true", d.release, d.relNS))
			return
		}
	}
	switch {
	case has:
		d.report(pass, fmt.Sprintf("namespace %s allows: %s", d.namespace, list), "")
	case requireList:
		d.report(fail, fmt.Sprintf("namespace %s has no %s annotation and the webhook requires one (--require-allow-list): every flow run there is refused", d.namespace, mutate.AnnotationAllowedSecrets),
			fmt.Sprintf("kubectl annotate namespace %s %s='AWS_CREDENTIALS, GITHUB_ACCESS_TOKEN' (the names its flow runs may receive)", d.namespace, mutate.AnnotationAllowedSecrets))
	}
}

// webhookPortRestricted tells whether a NetworkPolicy of the release namespace selects the
// webhook's pods and admits its port only from the peers it names (the chart's with
// networkPolicy.webhookFrom set): a policy that admits the port from anywhere keeps no forger out.
func (d *doctor) webhookPortRestricted(ctx context.Context, deploy *appsv1.Deployment, port int) bool {
	var policies networkingv1.NetworkPolicyList
	if err := d.c.List(ctx, &policies, client.InNamespace(d.relNS)); err != nil {
		return false
	}
	for _, p := range policies.Items {
		if ok, err := selects(&p.Spec.PodSelector, deploy.Spec.Template.Labels); err != nil || !ok || !slices.Contains(p.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
			continue
		}
		open := false
		for _, rule := range p.Spec.Ingress {
			covers := len(rule.Ports) == 0 || slices.ContainsFunc(rule.Ports, func(np networkingv1.NetworkPolicyPort) bool {
				return np.Port == nil || np.Port.IntValue() == port || np.Port.String() == "webhook"
			})
			if covers && len(rule.From) == 0 {
				open = true
			}
		}
		if !open {
			return true
		}
	}
	return false
}

func selects(sel *metav1.LabelSelector, l map[string]string) (bool, error) {
	if sel == nil {
		return true, nil
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return false, err
	}
	return s.Matches(labels.Set(l)), nil
}

// declaredNames renders the namespace's newest Jobs and a pod of its defaults with the cluster's
// Secret keys: every missing Secret or key the webhook would warn about is a failed check.
func (d *doctor) declaredNames(ctx context.Context) error {
	e := *d.emulated
	e.Namespace = d.namespace
	var ns corev1.Namespace
	if err := d.c.Get(ctx, types.NamespacedName{Name: d.namespace}, &ns); err == nil {
		e.NamespaceDefaults = map[string]string{d.namespace: ns.Annotations[mutate.AnnotationSecrets]}
	}
	keys, err := readKeys(ctx, d.c, d.namespace)
	if err != nil {
		return err
	}
	e.Keys, e.Missing = clusterKeys{d.namespace: keys}, mutate.MissingWarn
	var objects []map[string]any
	if defaults := e.NamespaceDefaults[d.namespace]; defaults != "" {
		// A Prefect flow-run pod declaring nothing itself: what the namespace's defaults give.
		objects = append(objects, map[string]any{"apiVersion": "v1", "kind": "Pod",
			"metadata": map[string]any{"name": "(namespace defaults)", "labels": map[string]any{mutate.LabelFlowRunIDPrefect2: "doctor"}},
			"spec":     map[string]any{"containers": []any{map[string]any{"name": "flow", "image": "flow"}}}})
	}
	var jobs batchv1.JobList
	if err := d.c.List(ctx, &jobs, client.InNamespace(d.namespace)); err != nil {
		return err
	}
	slices.SortFunc(jobs.Items, func(a, b batchv1.Job) int { return b.CreationTimestamp.Compare(a.CreationTimestamp.Time) })
	for _, j := range jobs.Items[:min(len(jobs.Items), recentJobs)] {
		u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&j)
		if err != nil {
			return err
		}
		u["kind"] = "Job"
		objects = append(objects, u)
	}
	checked := 0
	for _, obj := range objects {
		r, err := render.Render(ctx, obj, e.Cluster)
		if err != nil {
			return err
		}
		for _, t := range r.Templates {
			if !t.FlowRun {
				continue
			}
			checked++
			if len(t.Warnings) == 0 && t.Denial == "" {
				d.report(pass, fmt.Sprintf("%s %s: %s", r.Kind, r.Name, orNone(t.Status)), "")
			}
			for _, w := range append(slices.Clone(t.Warnings), t.Denial) {
				if w == "" {
					continue
				}
				what, fix, _ := strings.Cut(strings.TrimPrefix(w, "flowauth: "), ". Create it: ")
				if fix != "" {
					fix = "kubectl create secret " + strings.TrimPrefix(fix, "kubectl create secret ")
				}
				d.report(fail, fmt.Sprintf("%s %s: %s", r.Kind, r.Name, what), fix)
			}
		}
	}
	if checked == 0 {
		d.report(pass, fmt.Sprintf("namespace %s: no defaults and no flow-run Job to check Secrets for", d.namespace), "")
	}
	return nil
}

// pod explains one pod: was it sent to flowauth, what did flowauth write, what is missing.
func (d *doctor) pod(ctx context.Context, name string) error {
	var pod corev1.Pod
	if err := d.c.Get(ctx, types.NamespacedName{Namespace: d.namespace, Name: name}, &pod); err != nil {
		return err
	}
	var ns corev1.Namespace
	if err := d.c.Get(ctx, types.NamespacedName{Name: d.namespace}, &ns); err != nil {
		return err
	}
	defaults := ns.Annotations[mutate.AnnotationSecrets]
	if !mutate.IsFlowRun(pod.Annotations, pod.Labels, defaults) {
		d.report(pass, fmt.Sprintf("pod %s is not a flow run (no %s, and no Prefect flow-run label with namespace defaults): flowauth leaves it alone", name, mutate.AnnotationSecrets), "")
		return nil
	}
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	sent := true
	var selector *metav1.LabelSelector
	if p := d.findPolicies(ctx); p != nil && p.binding != nil && p.binding.Spec.MatchResources != nil {
		// Policy mode: the API server ran flowauth's policies on the pod if their binding selects
		// the namespace. What they write is what the webhook writes, so the checks below hold.
		selector = p.binding.Spec.MatchResources.NamespaceSelector
		d.emulated.RequireAllowList, d.emulated.SkipContainers = p.requireAllowList(), p.skipContainers()
	} else if err := d.c.Get(ctx, types.NamespacedName{Name: d.obj.config}, &mwc); err == nil && len(mwc.Webhooks) > 0 {
		selector = mwc.Webhooks[0].NamespaceSelector
	}
	if selector == nil {
		d.report(fail, fmt.Sprintf("no MutatingWebhookConfiguration %s nor admission policy %s-inject: the pod was not sent to flowauth", d.obj.config, fullname(d.release)), fmt.Sprintf("helm install %s charts/flowauth -n %s --create-namespace", d.release, d.relNS))
		sent = false
	} else if ok, _ := selects(selector, ns.Labels); !ok {
		d.report(fail, fmt.Sprintf("namespace %s is not opted in: pod %s was not sent to flowauth", d.namespace, name), fmt.Sprintf("kubectl label namespace %s flowauth.io/injection=enabled, then recreate the pod (delete it; its Job makes a new one)", d.namespace))
		sent = false
	}
	status, injected := pod.Annotations[mutate.AnnotationStatus]
	switch {
	case status == mutate.StatusOptedOut:
		d.report(pass, fmt.Sprintf("pod %s opted out (%s: %q): flowauth left it as it came, namespace defaults included", name, mutate.AnnotationInject, mutate.InjectFalse), "")
		return nil
	case injected && !sent:
		d.report(warn, fmt.Sprintf("pod %s carries %s %q, but flowauth was not sent it (above): its creator wrote that annotation, not flowauth", name, mutate.AnnotationStatus, status), "")
	case injected:
		// Any pod creator can write the annotation: it is trusted only when flowauth, run on
		// the pod as stored, would write the same (it does for its own output: idempotent).
		if again, changes, err := d.renderStatus(ctx, &pod); err != nil {
			return err
		} else if changes || again != status {
			d.report(warn, fmt.Sprintf("pod %s carries %s %q, but flowauth, run on the pod as stored, would still change it (status %q): flowauth did not write that annotation (its creator did), or flowauth's configuration changed since", name, mutate.AnnotationStatus, status, again), "")
		} else {
			d.report(pass, fmt.Sprintf("pod %s was admitted by flowauth: %s %s", name, mutate.AnnotationStatus, status), "")
		}
	case sent:
		d.report(fail, fmt.Sprintf("pod %s is a flow run in an opted-in namespace but has no %s: flowauth did not answer for it (unreachable with failurePolicy Ignore, or the pod is older than the installation)", name, mutate.AnnotationStatus),
			"kubectl flowauth doctor -n "+d.namespace+"; then recreate the pod")
	}
	// What the pod references and the namespace lacks: names only.
	keys, err := readKeys(ctx, d.c, d.namespace)
	if err != nil {
		return err
	}
	for _, c := range append(slices.Clone(pod.Spec.InitContainers), pod.Spec.Containers...) {
		for _, env := range c.Env {
			r := env.ValueFrom
			if r == nil || r.SecretKeyRef == nil || (r.SecretKeyRef.Optional != nil && *r.SecretKeyRef.Optional) {
				continue
			}
			have, found := keys.Secrets[r.SecretKeyRef.Name]
			switch {
			case !found:
				d.report(fail, fmt.Sprintf("container %s: env %s needs Secret %s, which does not exist", c.Name, env.Name, r.SecretKeyRef.Name),
					fmt.Sprintf("kubectl create secret generic %s -n %s --from-literal=%s=<value>", r.SecretKeyRef.Name, d.namespace, r.SecretKeyRef.Key))
			case !slices.Contains(have, r.SecretKeyRef.Key):
				d.report(fail, fmt.Sprintf("container %s: env %s needs key %s of Secret %s, which lacks it", c.Name, env.Name, r.SecretKeyRef.Key, r.SecretKeyRef.Name),
					fmt.Sprintf("add the key: kubectl edit secret %s -n %s", r.SecretKeyRef.Name, d.namespace))
			}
		}
	}
	for _, v := range pod.Spec.Volumes {
		if v.Secret == nil || (v.Secret.Optional != nil && *v.Secret.Optional) {
			continue
		}
		if _, found := keys.Secrets[v.Secret.SecretName]; !found {
			d.report(fail, fmt.Sprintf("volume %s needs Secret %s, which does not exist", v.Name, v.Secret.SecretName),
				fmt.Sprintf("kubectl create secret generic %s -n %s --from-file=...", v.Secret.SecretName, d.namespace))
		}
	}
	for _, cs := range append(slices.Clone(pod.Status.InitContainerStatuses), pod.Status.ContainerStatuses...) {
		if w := cs.State.Waiting; w != nil && w.Reason == "CreateContainerConfigError" {
			d.report(fail, fmt.Sprintf("container %s cannot start: %s: %s", cs.Name, w.Reason, w.Message), "create what is missing (above); the kubelet retries by itself")
		}
	}
	if d.failed == 0 {
		d.report(pass, fmt.Sprintf("pod %s has every Secret and key it references", name), "")
	}
	return nil
}

// renderStatus runs flowauth on the pod as stored, with the cluster's configuration and the
// namespace's defaults and allow-lists (no key lookup: doctor checks keys itself): the status it
// writes, and whether it would change anything. On its own output flowauth changes nothing and
// writes the same status (it is idempotent), so a pod it did not inject shows.
func (d *doctor) renderStatus(ctx context.Context, pod *corev1.Pod) (string, bool, error) {
	e := *d.emulated
	e.Namespace, e.Keys = d.namespace, nil
	var ns corev1.Namespace
	if err := d.c.Get(ctx, types.NamespacedName{Name: d.namespace}, &ns); err == nil {
		e.NamespaceDefaults = map[string]string{d.namespace: ns.Annotations[mutate.AnnotationSecrets]}
		e.NamespaceAnnotations = map[string]map[string]string{d.namespace: ns.Annotations}
	}
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(pod)
	if err != nil {
		return "", false, err
	}
	u["apiVersion"], u["kind"] = "v1", "Pod"
	r, err := render.Render(ctx, u, e.Cluster)
	if err != nil || len(r.Templates) == 0 {
		return "", false, err
	}
	return r.Templates[0].Status, len(r.Templates[0].Patch) > 0, nil
}

func orMissing(err error) string {
	if err == nil {
		return "not found"
	}
	return err.Error()
}

func orNone(s string) string {
	if s == "" {
		return "nothing to inject"
	}
	return "injects " + strings.TrimPrefix(s, "injected=")
}
