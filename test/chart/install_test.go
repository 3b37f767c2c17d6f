package chart

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

const (
	namespace      = "flowauth-system"
	serviceAccount = "system:serviceaccount:flowauth-system:flowauth"
)

var crdsOnce sync.Once

func installCRDs(t *testing.T) {
	t.Helper()
	crdsOnce.Do(func() {
		kubectl(t, "apply", "-f", filepath.Join("testdata", "crds.yaml"))
		kubectl(t, "wait", "--for=condition=Established", "--timeout=30s",
			"crd/issuers.cert-manager.io", "crd/certificates.cert-manager.io", "crd/servicemonitors.monitoring.coreos.com")
	})
}

// TestEveryExampleInstallsAndUninstalls installs the chart with each example values file into
// the real kube-apiserver, so the API server itself validates every object (schemas, RBAC
// rules, the webhook configuration and its CEL matchConditions), then checks what the webhook's
// ServiceAccount may and may not do, and uninstalls.
func TestEveryExampleInstallsAndUninstalls(t *testing.T) {
	installCRDs(t)
	type can struct {
		verb, resource, namespace string
		allowed                   bool
	}
	namespaceDefaults := []can{{"list", "namespaces", "", true}, {"watch", "namespaces", "", true}}
	selfManaged := []can{
		{"update", "mutatingwebhookconfigurations/flowauth", "", true},
		{"update", "validatingwebhookconfigurations/flowauth", "", true},
		{"get", "secrets/flowauth-certs", namespace, true},
		{"update", "secrets/flowauth-certs", namespace, true},
	}
	never := []can{
		{"update", "mutatingwebhookconfigurations/someone-else", "", false},
		{"delete", "mutatingwebhookconfigurations/flowauth", "", false},
		{"update", "validatingwebhookconfigurations/someone-else", "", false},
		{"get", "secrets/someone-elses", namespace, false},
		{"update", "secrets/someone-elses", namespace, false},
		{"list", "secrets", "flows", false},
		{"create", "pods", "flows", false},
		{"update", "namespaces/flows", "", false},
	}
	tests := []struct {
		file string
		can  []can
		set  []string
		// notes must be in the NOTES helm prints.
		notes []string
	}{
		{file: "values-bare-cluster.yaml", can: slices.Concat(namespaceDefaults, selfManaged, never)},
		{file: "values-cert-manager.yaml", can: slices.Concat(namespaceDefaults, never, []can{
			{"create", "events.events.k8s.io", "flows", true},
			{"update", "mutatingwebhookconfigurations/flowauth", "", false},
			{"list", "secrets", namespace, false},
		})},
		{file: "values-key-lookup.yaml", can: slices.Concat(namespaceDefaults, selfManaged, []can{
			{"list", "secrets", "flows", true},
			{"watch", "configmaps", "flows", true},
			{"get", "secrets/aws-credentials", "flows", false},
			{"create", "events.events.k8s.io", "flows", true},
		})},
		{file: "values-openshift.yaml", can: slices.Concat(namespaceDefaults, selfManaged, never)},
		{file: "values-host-network.yaml", can: slices.Concat(namespaceDefaults, selfManaged, never)},
		// Your own certificate: Namespaces are still read, so allow-lists are enforced.
		{file: "values-own-certificate.yaml", can: slices.Concat(never, namespaceDefaults, []can{
			{"create", "events.events.k8s.io", "flows", true},
			{"list", "secrets", namespace, false},
			{"update", "mutatingwebhookconfigurations/flowauth", "", false},
		}), notes: []string{"Note: any pod that reaches the Service flowauth can post admission reviews"}},
		// Zero privilege, chosen: no API access, and the NOTES say allow-lists are not enforced.
		{file: "values-own-certificate.yaml", set: []string{"clusterConnection=false"}, can: slices.Concat(never, []can{
			{"list", "namespaces", "", false},
			{"create", "events.events.k8s.io", "flows", false},
			{"list", "secrets", namespace, false},
			{"update", "mutatingwebhookconfigurations/flowauth", "", false},
		}), notes: []string{"WARNING: clusterConnection is false: flowauth reads no Namespace, so NO namespace allow-list"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(append([]string{tt.file}, tt.set...), " "), func(t *testing.T) {
			args := []string{"install", "flowauth", "charts/flowauth", "--namespace", namespace, "--create-namespace", "-f", filepath.Join("examples", tt.file)}
			for _, s := range tt.set {
				args = append(args, "--set", s)
			}
			out := mustHelm(t, args...)
			for _, n := range tt.notes {
				if !strings.Contains(out, n) {
					t.Errorf("helm install's NOTES lack %q:\n%s", n, out)
				}
			}
			t.Cleanup(func() { mustHelm(t, "uninstall", "flowauth", "--namespace", namespace, "--wait") })
			if !strings.Contains(out, "STATUS: deployed") || !strings.Contains(out, "kubectl label namespace flows flowauth.io/injection=enabled") {
				t.Errorf("helm install output lacks the status or the NOTES' next commands:\n%s", out)
			}
			rendered := decode(t, mustHelm(t, "get", "manifest", "flowauth", "--namespace", namespace))
			for _, o := range rendered {
				args := []string{"get", strings.ToLower(o.GetKind()) + "." + groupOf(o.GetAPIVersion()), o.GetName(), "-o", "name"}
				if o.GetNamespace() != "" {
					args = append(args, "-n", o.GetNamespace())
				}
				kubectl(t, args...)
			}
			for _, c := range tt.can {
				if got := canI(t, c.verb, c.resource, c.namespace); got != c.allowed {
					t.Errorf("ServiceAccount may %s %s (namespace %q): %v, want %v", c.verb, c.resource, c.namespace, got, c.allowed)
				}
			}
		})
	}
}

// TestKustomizeConfigApplies: `kubectl apply -k config/default`, as the README says, is accepted
// by the API server (server-side, strict field validation), and gives the same privileges.
func TestKustomizeConfigApplies(t *testing.T) {
	kubectl(t, "apply", "--server-side", "--field-manager=flowauth-test", "--validate=strict", "-k", filepath.Join(root, "config", "default"))
	t.Cleanup(func() { kubectl(t, "delete", "-k", filepath.Join(root, "config", "default"), "--wait") })
	as := "system:serviceaccount:flowauth-system:flowauth-webhook"
	for _, c := range []struct {
		verb, resource, namespace string
		allowed                   bool
	}{
		{"list", "namespaces", "", true},
		{"update", "mutatingwebhookconfigurations/flowauth-webhook-configuration", "", true},
		{"update", "secrets/flowauth-certs", namespace, true},
		{"update", "validatingwebhookconfigurations/flowauth-webhook-configuration", "", true},
		{"create", "events.events.k8s.io", "flows", true},
		{"update", "mutatingwebhookconfigurations/someone-else", "", false},
		{"list", "secrets", "flows", false},
	} {
		if got := canIAs(t, as, c.verb, c.resource, c.namespace); got != c.allowed {
			t.Errorf("%s may %s %s (namespace %q): %v, want %v", as, c.verb, c.resource, c.namespace, got, c.allowed)
		}
	}
}

func canI(t *testing.T, verb, resource, ns string) bool {
	t.Helper()
	return canIAs(t, serviceAccount, verb, resource, ns)
}

// canIAs asks the API server's authorizer (kubectl auth can-i with impersonation).
func canIAs(t *testing.T, user, verb, resource, ns string) bool {
	t.Helper()
	args := []string{"auth", "can-i", verb, resource, "--as=" + user}
	if ns != "" {
		args = append(args, "-n", ns)
	}
	out, errOut, err := cluster.Kubectl(context.Background(), args...)
	answer := strings.TrimSpace(out)
	if answer != "yes" && answer != "no" {
		t.Fatalf("kubectl %s: %q %v %s", strings.Join(args, " "), out, err, errOut)
	}
	return answer == "yes"
}

func groupOf(apiVersion string) string {
	group, _, found := strings.Cut(apiVersion, "/")
	if !found {
		return ""
	}
	return group
}
