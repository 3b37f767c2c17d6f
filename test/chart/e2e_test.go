package chart

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flowauth/flowauth/test/localcluster"
)

// TestInstalledChartServesWithItsOwnCertificate is the chart end to end. `helm install` with
// default values; the rendered MutatingWebhookConfiguration keeps its selectors, matchConditions
// and policies, and only its clientConfig is pointed at the webhook binary running here. The
// binary runs with the Deployment's own args and the chart ServiceAccount's token (so the
// chart's RBAC is what it has), provisions its certificate through cert-controller, and serves
// flow-run pods; pods the selectors exclude never reach it.
func TestInstalledChartServesWithItsOwnCertificate(t *testing.T) {
	ctx := context.Background()
	webhook := installAndRun(t)
	port, kubeconfig, projection := webhook.port, webhook.kubeconfig, webhook.projection
	deploy := webhook.deploy

	t.Run("the certificate is provisioned, injected and served", func(t *testing.T) {
		var certs corev1.Secret
		if err := cluster.Client.Get(ctx, types.NamespacedName{Namespace: namespace, Name: "flowauth-certs"}, &certs); err != nil {
			t.Fatal(err)
		}
		for _, key := range []string{"tls.crt", "tls.key", "ca.crt", "ca.key"} {
			if len(certs.Data[key]) == 0 {
				t.Errorf("Secret flowauth-certs lacks %s", key)
			}
		}
		var mwc admissionregistrationv1.MutatingWebhookConfiguration
		if err := cluster.Client.Get(ctx, types.NamespacedName{Name: "flowauth"}, &mwc); err != nil {
			t.Fatal(err)
		}
		bundle := mwc.Webhooks[0].ClientConfig.CABundle
		if string(bundle) != string(certs.Data["ca.crt"]) {
			t.Fatalf("caBundle of the webhook configuration is not the CA in the Secret")
		}
		// The API server's view: the served certificate chains to the injected CA for this name.
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(bundle) {
			t.Fatal("caBundle holds no PEM certificate")
		}
		dialer := &tls.Dialer{Config: &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}}
		conn, err := dialer.DialContext(ctx, "tcp", net.JoinHostPort("localhost", port))
		if err != nil {
			t.Fatalf("the served certificate does not verify against the injected CA: %v", err)
		}
		_ = conn.Close()
		if !strings.Contains(webhook.Log.String(), "serving certificate in place; starting the webhook server") {
			t.Error("the log does not show the server waiting for its certificate")
		}

		// A second replica finds the certificate in the Secret and serves the same CA's.
		addr2, err := localcluster.FreeAddr()
		if err != nil {
			t.Fatal(err)
		}
		_, port2, _ := net.SplitHostPort(addr2)
		certDir2 := t.TempDir()
		cluster.ProjectSecret(projection, namespace, "flowauth-certs", certDir2)
		second, err := cluster.RunWebhook(ctx, localArgs(deploy.Spec.Template.Spec.Containers[0].Args, map[string]string{
			"--port": port2, "--cert-dir": certDir2, "--cert-dns-name": "localhost", "--kubeconfig": kubeconfig,
		})...)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = second.Stop() }()
		if err := second.WaitReady(ctx, net.JoinHostPort("localhost", port2)); err != nil {
			t.Fatal(err)
		}
		conn, err = dialer.DialContext(ctx, "tcp", net.JoinHostPort("localhost", port2))
		if err != nil {
			t.Fatalf("the second replica's certificate does not verify against the same CA: %v", err)
		}
		_ = conn.Close()
		var after admissionregistrationv1.MutatingWebhookConfiguration
		if err := cluster.Client.Get(ctx, types.NamespacedName{Name: "flowauth"}, &after); err != nil {
			t.Fatal(err)
		}
		if string(after.Webhooks[0].ClientConfig.CABundle) != string(bundle) {
			t.Error("the second replica replaced the CA")
		}
	})

	t.Run("flow-run pods in opted-in namespaces are injected, no other pod is sent", func(t *testing.T) {
		kubectl(t, "create", "namespace", "flows")
		kubectl(t, "label", "namespace", "flows", "flowauth.io/injection=enabled")
		kubectl(t, "create", "namespace", "elsewhere")
		kubectl(t, "-n", "flows", "apply", "-f", filepath.Join(root, "examples", "secrets.yaml"))
		kubectl(t, "-n", "flows", "apply", "-f", filepath.Join(root, "examples", "prefect2-flow-run-job.yaml"))
		pod, err := cluster.WaitForJobPod(ctx, "flows", "tangerine-lion-x7k2p")
		if err != nil {
			t.Fatal(err)
		}
		if got := pod.Annotations["flowauth.io/status"]; got != "injected=GITHUB_ACCESS_TOKEN,AWS_CREDENTIALS; layers=native" {
			t.Errorf("flow-run pod status = %q", got)
		}

		// Opt kube-system and the release namespace in too: the chart's selector still excludes them.
		for _, ns := range []string{"kube-system", namespace} {
			kubectl(t, "label", "namespace", ns, "flowauth.io/injection=enabled")
			t.Cleanup(func() { kubectl(t, "label", "namespace", ns, "flowauth.io/injection-") })
		}
		flowRun := map[string]string{"flowauth.io/secrets": "GITHUB_ACCESS_TOKEN"}
		for _, p := range []struct {
			namespace   string
			annotations map[string]string
		}{
			{"kube-system", flowRun},
			{namespace, flowRun},
			{"elsewhere", flowRun}, // not opted in
			{"flows", nil},         // opted in, but not a flow run: matchConditions keep it away
		} {
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{GenerateName: "not-sent-", Namespace: p.namespace, Annotations: p.annotations},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
			}
			if err := cluster.Client.Create(ctx, pod); err != nil {
				t.Fatalf("pod in %s: %v", p.namespace, err)
			}
			if len(pod.Spec.Containers[0].Env) != 0 || pod.Annotations["flowauth.io/status"] != "" {
				t.Errorf("pod in %s (annotations %v) was changed: %v", p.namespace, p.annotations, pod.Spec.Containers[0].Env)
			}
			_ = cluster.Client.Delete(ctx, pod)
		}
		if got := admissionRequests(t, webhook.MetricsURL); got != 1 {
			t.Errorf("the webhook received %v admission requests, want 1 (the flow run's pod only)", got)
		}
	})

	t.Run("helm upgrade keeps the certificate and the caBundle", func(t *testing.T) {
		var before admissionregistrationv1.MutatingWebhookConfiguration
		if err := cluster.Client.Get(ctx, types.NamespacedName{Name: "flowauth"}, &before); err != nil {
			t.Fatal(err)
		}
		// Put the chart's clientConfig back for the upgrade (the URL is this test's doing: helm's
		// three-way merge would add the service next to it), then point at the binary again.
		clientConfigs(t, "")
		mustHelm(t, "upgrade", "flowauth", "charts/flowauth", "--namespace", namespace, "--reuse-values", "--set", "webhook.timeoutSeconds=7")
		clientConfigs(t, port)
		var after admissionregistrationv1.MutatingWebhookConfiguration
		if err := cluster.Client.Get(ctx, types.NamespacedName{Name: "flowauth"}, &after); err != nil {
			t.Fatal(err)
		}
		if got := *after.Webhooks[0].TimeoutSeconds; got != 7 {
			t.Errorf("timeoutSeconds after upgrade = %d, want 7", got)
		}
		if len(after.Webhooks[0].ClientConfig.CABundle) == 0 || string(after.Webhooks[0].ClientConfig.CABundle) != string(before.Webhooks[0].ClientConfig.CABundle) {
			t.Error("helm upgrade dropped or changed the injected caBundle")
		}
		var certs corev1.Secret
		if err := cluster.Client.Get(ctx, types.NamespacedName{Namespace: namespace, Name: "flowauth-certs"}, &certs); err != nil {
			t.Fatal(err)
		}
		if len(certs.Data["tls.crt"]) == 0 {
			t.Error("helm upgrade emptied the certificate Secret")
		}
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "after-upgrade-", Namespace: "flows", Annotations: map[string]string{"flowauth.io/secrets": "GITHUB_ACCESS_TOKEN"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
		}
		if err := cluster.Client.Create(ctx, pod); err != nil {
			t.Fatal(err)
		}
		if got := pod.Annotations["flowauth.io/status"]; got != "injected=GITHUB_ACCESS_TOKEN" {
			t.Errorf("after the upgrade, a flow-run pod's status = %q", got)
		}
	})

	t.Run("helm uninstall removes the webhook configuration", func(t *testing.T) {
		mustHelm(t, "uninstall", "flowauth", "--namespace", namespace, "--wait")
		var mwc admissionregistrationv1.MutatingWebhookConfiguration
		if err := cluster.Client.Get(ctx, types.NamespacedName{Name: "flowauth"}, &mwc); client.IgnoreNotFound(err) != nil || err == nil {
			t.Errorf("after uninstall, the webhook configuration: %v", err)
		}
		mustHelm(t, "install", "flowauth", "charts/flowauth", "--namespace", namespace) // for the Cleanup's uninstall
	})
}

// chartWebhook is the webhook binary run as the installed chart's Deployment runs it.
type chartWebhook struct {
	*localcluster.Webhook
	port, kubeconfig string
	deploy           appsv1.Deployment
	// projection lives as long as the test: it ends the Secret projections.
	projection context.Context
}

// installAndRun installs the chart (helm install with helmArgs), points the webhook
// configurations' clientConfig at a local port, and runs the binary there with the Deployment's
// args and the ServiceAccount's token, its certificate Secret projected into --cert-dir as the
// kubelet would. It returns once the webhook is ready; cleanups stop it and uninstall.
func installAndRun(t *testing.T, helmArgs ...string) *chartWebhook {
	t.Helper()
	ctx := context.Background()
	mustHelm(t, append([]string{"install", "flowauth", "charts/flowauth", "--namespace", namespace, "--create-namespace"}, helmArgs...)...)
	t.Cleanup(func() { mustHelm(t, "uninstall", "flowauth", "--namespace", namespace, "--wait") })

	addr, err := localcluster.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(addr)
	clientConfigs(t, port)
	c := &chartWebhook{port: port}
	if err := cluster.Client.Get(ctx, types.NamespacedName{Namespace: namespace, Name: "flowauth"}, &c.deploy); err != nil {
		t.Fatal(err)
	}
	if c.kubeconfig, err = cluster.ServiceAccountKubeconfig(ctx, namespace, "flowauth"); err != nil {
		t.Fatal(err)
	}
	certDir := t.TempDir()
	projection, stopProjection := context.WithCancel(ctx)
	t.Cleanup(stopProjection)
	c.projection = projection
	cluster.ProjectSecret(projection, namespace, "flowauth-certs", certDir)
	args := localArgs(c.deploy.Spec.Template.Spec.Containers[0].Args, map[string]string{
		"--port": port, "--cert-dir": certDir, "--cert-dns-name": "localhost", "--kubeconfig": c.kubeconfig, "--log-level": "debug",
	})
	if c.Webhook, err = cluster.RunWebhook(ctx, args...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("webhook did not stop cleanly on SIGTERM: %v", err)
		}
		if t.Failed() {
			t.Logf("webhook output:\n%s", c.Log.String())
		}
	})
	if err := c.WaitReady(ctx, net.JoinHostPort("localhost", port)); err != nil {
		t.Fatal(err)
	}
	return c
}

// localArgs is the Deployment's args with the flags that depend on where it runs replaced.
func localArgs(deployment []string, local map[string]string) []string {
	var out []string
	for _, a := range deployment {
		flag, _, _ := strings.Cut(a, "=")
		if _, replaced := local[flag]; !replaced && flag != "--metrics-bind-address" && flag != "--health-probe-bind-address" {
			out = append(out, a)
		}
	}
	flags := slices.Sorted(func(yield func(string) bool) {
		for f := range local {
			if !yield(f) {
				return
			}
		}
	})
	for _, f := range flags {
		out = append(out, f+"="+local[f])
	}
	return out
}

// clientConfigs points every webhook of the chart's two configurations at the binary on this
// machine's port (a URL: no pod backs the Service here), or with port "" back at the chart's
// Service (helm's three-way merge would otherwise add the Service next to the URL). The caBundle
// is left as it is.
func clientConfigs(t *testing.T, port string) {
	t.Helper()
	for _, c := range []struct {
		kind, path string
		webhooks   int
	}{{"mutatingwebhookconfiguration", "/mutate-v1-pod", 1}, {"validatingwebhookconfiguration", "/validate-batch-v1-job", 3}} {
		var ops []string
		for i := range c.webhooks {
			at := fmt.Sprintf("/webhooks/%d/clientConfig", i)
			if port != "" {
				ops = append(ops, fmt.Sprintf(`{"op":"remove","path":"%s/service"},{"op":"add","path":"%s/url","value":"https://localhost:%s%s"}`, at, at, port, c.path))
			} else {
				ops = append(ops, fmt.Sprintf(`{"op":"remove","path":"%s/url"},{"op":"add","path":"%s/service","value":{"name":"flowauth","namespace":%q,"path":%q,"port":443}}`, at, at, namespace, c.path))
			}
		}
		kubectl(t, "patch", c.kind, "flowauth", "--type=json", "-p", "["+strings.Join(ops, ",")+"]")
	}
}

// admissionRequests sums flowauth_admission_requests_total over its labels.
func admissionRequests(t *testing.T, url string) float64 {
	t.Helper()
	samples, err := localcluster.MetricSamples(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	var total float64
	for sample, v := range samples {
		if strings.HasPrefix(sample, "flowauth_admission_requests_total{") {
			total += v
		}
	}
	return total
}
