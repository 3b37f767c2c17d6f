package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"debug/elf"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flowauth/flowauth/test/localcluster"
)

// TestChartServesFromInsideTheCluster: `helm install` with default values (the image aside) gives
// two Ready replicas on the node, which made their own CA and certificate and injected the CA;
// the API server calls them through the chart's Service, and a flow-run pod is injected.
func TestChartServesFromInsideTheCluster(t *testing.T) {
	needNode(t)
	ctx := context.Background()
	ns := localcluster.FlowauthNamespace

	var deploy appsv1.Deployment
	if err := cluster.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "flowauth"}, &deploy); err != nil {
		t.Fatal(err)
	}
	if deploy.Status.ReadyReplicas != 2 || *deploy.Spec.Replicas != 2 {
		t.Errorf("deployment: %d of %d replicas ready, want 2 of 2", deploy.Status.ReadyReplicas, *deploy.Spec.Replicas)
	}
	if got := deploy.Spec.Template.Spec.Containers[0].Image; got != cluster.Images.Webhook {
		t.Errorf("the chart runs %s, want the registry's %s", got, cluster.Images.Webhook)
	}
	var pods corev1.PodList
	if err := cluster.Client.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{"app.kubernetes.io/name": "flowauth"}); err != nil {
		t.Fatal(err)
	}
	running := 0
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil {
			continue // one of an earlier rollout's, still shutting down
		}
		ready := slices.ContainsFunc(p.Status.Conditions, func(c corev1.PodCondition) bool {
			return c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue
		})
		if p.Status.Phase == corev1.PodRunning && ready && p.Spec.NodeName == localcluster.NodeName && p.Status.PodIP != "" {
			running++
		}
	}
	if running != 2 {
		t.Errorf("%d flowauth pods Running and Ready on %s, want 2", running, localcluster.NodeName)
	}

	// Self-managed TLS, done by the pods: the Secret holds a CA and a serving certificate, and
	// the CA is in the webhook configuration, which still names the Service (nothing rewritten).
	var certs corev1.Secret
	if err := cluster.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "flowauth-certs"}, &certs); err != nil {
		t.Fatal(err)
	}
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	if err := cluster.Client.Get(ctx, types.NamespacedName{Name: "flowauth"}, &mwc); err != nil {
		t.Fatal(err)
	}
	cc := mwc.Webhooks[0].ClientConfig
	if cc.URL != nil || cc.Service == nil || cc.Service.Name != "flowauth" || cc.Service.Namespace != ns {
		t.Errorf("the webhook's clientConfig is not the chart's Service: %+v", cc)
	}
	if len(cc.CABundle) == 0 || string(cc.CABundle) != string(certs.Data["ca.crt"]) {
		t.Fatal("the caBundle is not the CA the pods wrote into flowauth-certs")
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(cc.CABundle)
	leaf, err := tls.X509KeyPair(certs.Data["tls.crt"], certs.Data["tls.key"])
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(leaf.Certificate[0])
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: "flowauth." + ns + ".svc"}); err != nil {
		t.Errorf("the serving certificate does not verify for the Service's name: %v", err)
	}

	// The API server reaches the webhook through the Service: a flow-run pod comes back injected.
	flows := newNamespace(t, "chart")
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "flow-run-", Namespace: flows, Annotations: map[string]string{"flowauth.io/secrets": "GITHUB_ACCESS_TOKEN"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "flow", Image: cluster.Images.Probe}}},
	}
	if err := cluster.Client.Create(ctx, pod, client.DryRunAll); err != nil {
		t.Fatal(err)
	}
	if got := pod.Annotations["flowauth.io/status"]; got != "injected=GITHUB_ACCESS_TOKEN" {
		t.Errorf("a flow-run pod's status = %q, want injected=GITHUB_ACCESS_TOKEN", got)
	}
	t.Logf("helm install --wait took %s", installTook)
}

// TestWebhookImageMatchesTheDockerfile: the image built without a daemon and pulled from the
// registry has the Dockerfile's user, entrypoint and ports, for every platform it is built for,
// and a static binary.
func TestWebhookImageMatchesTheDockerfile(t *testing.T) {
	needNode(t)
	src, err := os.ReadFile(root + "/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	final := string(src)[strings.LastIndex(string(src), "\nFROM "):]
	user := regexp.MustCompile(`(?m)^USER (\S+)$`).FindStringSubmatch(final)
	entrypoint := regexp.MustCompile(`(?m)^ENTRYPOINT \["([^"]+)"\]$`).FindStringSubmatch(final)
	expose := regexp.MustCompile(`(?m)^EXPOSE (.+)$`).FindStringSubmatch(final)
	if user == nil || entrypoint == nil || expose == nil {
		t.Fatalf("the Dockerfile's final stage lacks USER, ENTRYPOINT or EXPOSE:\n%s", final)
	}
	copied := regexp.MustCompile(`(?m)^COPY --from=build /out/webhook (\S+)$`).FindStringSubmatch(final)
	if copied == nil || copied[1] != entrypoint[1] {
		t.Errorf("the Dockerfile's entrypoint %s is not the binary it copies (%v)", entrypoint[1], copied)
	}
	for _, p := range localcluster.WebhookPlatforms {
		cfg, err := localcluster.PulledConfig(context.Background(), cluster.Images.Webhook, p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if cfg.OS != p.OS || cfg.Architecture != p.Architecture {
			t.Errorf("the %s image says it is %s/%s", p, cfg.OS, cfg.Architecture)
		}
		if cfg.Config.User != user[1] {
			t.Errorf("%s: user %q, the Dockerfile's %q", p, cfg.Config.User, user[1])
		}
		if !slices.Equal(cfg.Config.Entrypoint, []string{entrypoint[1]}) {
			t.Errorf("%s: entrypoint %v, the Dockerfile's [%s]", p, cfg.Config.Entrypoint, entrypoint[1])
		}
		var ports []string
		for _, port := range strings.Fields(expose[1]) {
			ports = append(ports, port+"/tcp")
		}
		var got []string
		for port := range cfg.Config.ExposedPorts {
			got = append(got, port)
		}
		slices.Sort(ports)
		slices.Sort(got)
		if !slices.Equal(got, ports) {
			t.Errorf("%s: exposed ports %v, the Dockerfile's %v", p, got, ports)
		}
	}
	bin, err := localcluster.PulledFile(context.Background(), cluster.Images.Webhook, v1.Platform{OS: "linux", Architecture: "amd64"}, strings.TrimPrefix(entrypoint[1], "/"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.NewFile(strings.NewReader(string(bin)))
	if err != nil {
		t.Fatal(err)
	}
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP || prog.Type == elf.PT_DYNAMIC {
			t.Errorf("the image's binary is dynamically linked (%v): it cannot run on an empty base", prog.Type)
		}
	}
}
