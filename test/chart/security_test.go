package chart

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/labels"
)

// TestChartSecuritySettings: the settings of docs/security.md render what
// they promise, and nothing of them is on unless asked, but the namespace selector.
func TestChartSecuritySettings(t *testing.T) {
	render := func(set ...string) ([]string, map[string]any, []string) {
		objs := decode(t, mustHelm(t, append(slices.Clone(release), set...)...))
		d := find(t, objs, "Deployment")
		return stringsAt(d.Object, "spec.template.spec.containers.0.args"), at(d.Object, "spec.template.spec").(map[string]any), kinds(objs)
	}

	t.Run("the binary serves the namespaces the configurations select", func(t *testing.T) {
		args, _, _ := render("--set-json", `webhook.namespaceSelector={"matchLabels":{"flowauth.io/injection":"enabled"},"matchExpressions":[{"key":"team","operator":"In","values":["data","ml"]},{"key":"frozen","operator":"DoesNotExist"}]}`)
		var flag string
		for _, a := range args {
			if v, ok := strings.CutPrefix(a, "--namespace-selector="); ok {
				flag = v
			}
		}
		sel, err := labels.Parse(flag)
		if err != nil {
			t.Fatalf("--namespace-selector=%q does not parse as the binary parses it: %v", flag, err)
		}
		for _, tc := range []struct {
			labels map[string]string
			want   bool
		}{
			{map[string]string{"flowauth.io/injection": "enabled", "team": "data", "kubernetes.io/metadata.name": "flows"}, true},
			{map[string]string{"flowauth.io/injection": "enabled", "team": "web", "kubernetes.io/metadata.name": "flows"}, false},
			{map[string]string{"flowauth.io/injection": "enabled", "team": "ml", "frozen": "y", "kubernetes.io/metadata.name": "flows"}, false},
			{map[string]string{"flowauth.io/injection": "enabled", "team": "data", "kubernetes.io/metadata.name": "kube-system"}, false},
			{map[string]string{"flowauth.io/injection": "enabled", "team": "data", "kubernetes.io/metadata.name": "flowauth-system"}, false},
		} {
			if got := sel.Matches(labels.Set(tc.labels)); got != tc.want {
				t.Errorf("%q matches %v: %v, want %v", flag, tc.labels, got, tc.want)
			}
		}
	})

	t.Run("defaults", func(t *testing.T) {
		args, spec, kinds := render()
		for _, a := range args {
			if strings.HasPrefix(a, "--client-ca-file") || a == "--require-allow-list" {
				t.Errorf("on by default: %s", a)
			}
		}
		if slices.Contains(kinds, "NetworkPolicy/flowauth") {
			t.Error("a NetworkPolicy by default")
		}
		// The pods mount only what the server serves with: never the CA's key.
		items := at(spec, "volumes.0.secret.items").([]any)
		var keys []string
		for _, it := range items {
			keys = append(keys, at(it, "key").(string))
		}
		if strings.Join(keys, ",") != "tls.crt,tls.key" {
			t.Errorf("the certificate volume holds %v; want tls.crt, tls.key", keys)
		}
	})

	t.Run("hardened", func(t *testing.T) {
		args, spec, kinds := render("--set", "policy.requireAllowList=true", "--set", "webhook.clientAuth.caConfigMap=apiserver-webhook-ca",
			"--set", "webhook.clientAuth.names={kube-apiserver}", "--set", "networkPolicy.enabled=true",
			"--set-json", `networkPolicy.webhookFrom=[{"ipBlock":{"cidr":"10.0.0.0/28"}}]`)
		for _, want := range []string{"--require-allow-list", "--client-ca-file=/etc/flowauth/client-ca/ca.crt", "--client-names=kube-apiserver"} {
			if !slices.Contains(args, want) {
				t.Errorf("args lack %s: %v", want, args)
			}
		}
		if got := at(spec, "volumes.1.configMap.name"); got != "apiserver-webhook-ca" {
			t.Errorf("client CA volume from %v", got)
		}
		if !slices.Contains(kinds, "NetworkPolicy/flowauth") {
			t.Fatalf("no NetworkPolicy: %v", kinds)
		}
		objs := decode(t, mustHelm(t, append(slices.Clone(release), "--set", "networkPolicy.enabled=true", "--set-json", `networkPolicy.webhookFrom=[{"ipBlock":{"cidr":"10.0.0.0/28"}}]`)...))
		np := find(t, objs, "NetworkPolicy")
		if got := at(np.Object, "spec.ingress.0.from.0.ipBlock.cidr"); got != "10.0.0.0/28" {
			t.Errorf("webhook port from %v", got)
		}
		metricsFrom := at(np.Object, "spec.ingress.1.from.0.namespaceSelector.matchLabels").(map[string]any)
		if metricsFrom["kubernetes.io/metadata.name"] != "monitoring" {
			t.Errorf("metrics port from %v", metricsFrom)
		}
	})

	t.Run("cert-manager issues from a CA", func(t *testing.T) {
		objs := decode(t, mustHelm(t, append(slices.Clone(release), "--set", "certManager.enabled=true")...))
		var ca, serving map[string]any
		for _, o := range objs {
			if o.GetKind() == "Certificate" && strings.HasSuffix(o.GetName(), "-ca") {
				ca = o.Object
			}
			if o.GetKind() == "Certificate" && strings.HasSuffix(o.GetName(), "-serving") {
				serving = o.Object
			}
		}
		if ca == nil || serving == nil {
			t.Fatalf("want a CA Certificate and a serving Certificate: %v", kinds(objs))
		}
		if at(ca, "spec.isCA") != true || at(ca, "spec.issuerRef.name") != "flowauth-selfsigned" {
			t.Errorf("CA certificate: %v", at(ca, "spec"))
		}
		if at(serving, "spec.issuerRef.name") != "flowauth-ca" {
			t.Errorf("the serving certificate is issued by %v, not the CA's Issuer", at(serving, "spec.issuerRef.name"))
		}
		found := false
		for _, o := range objs {
			if o.GetKind() == "Issuer" && o.GetName() == "flowauth-ca" && at(o.Object, "spec.ca.secretName") == "flowauth-ca" {
				found = true
			}
		}
		if !found {
			t.Error("no CA Issuer reading the CA's Secret")
		}
	})
}

// TestPlatformsSettings: the host-network mode serves every port from the node on ports of its
// own, and the UID-assigning setting leaves UIDs to the platform but nothing else of the
// hardening.
func TestPlatformsSettings(t *testing.T) {
	spec := func(file string) map[string]any {
		objs := decode(t, mustHelm(t, append(slices.Clone(release), "-f", filepath.Join(root, "examples", file))...))
		return at(find(t, objs, "Deployment").Object, "spec.template.spec").(map[string]any)
	}
	t.Run("host network", func(t *testing.T) {
		pod := spec("values-host-network.yaml")
		for path, want := range map[string]any{
			"hostNetwork":                        true,
			"dnsPolicy":                          "ClusterFirstWithHostNet",
			"containers.0.ports.0.containerPort": float64(10270),
			"containers.0.ports.1.containerPort": float64(10271),
			"containers.0.ports.2.containerPort": float64(10272),
		} {
			if got := at(pod, path); got != want {
				t.Errorf("pod spec %s = %v, want %v", path, got, want)
			}
		}
		args := stringsAt(pod, "containers.0.args")
		for _, want := range []string{"--port=10270", "--metrics-bind-address=:10271", "--health-probe-bind-address=:10272"} {
			if !slices.Contains(args, want) {
				t.Errorf("args lack %s: %v", want, args)
			}
		}
	})
	t.Run("UIDs left to the platform", func(t *testing.T) {
		pod := spec("values-openshift.yaml")
		for _, path := range []string{"securityContext.runAsUser", "securityContext.runAsGroup", "securityContext.fsGroup", "containers.0.securityContext.runAsUser"} {
			if got := at(pod, path); got != nil {
				t.Errorf("pod spec %s = %v, want it unset for the platform to assign", path, got)
			}
		}
		// The rest of the hardening holds for this example as for every other: TestSafeByDefault.
	})
}
