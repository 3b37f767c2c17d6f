package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"sigs.k8s.io/yaml"

	"github.com/flowauth/flowauth/pkg/policy"
)

// TestPolicyPrintsTheInstall: `kubectl flowauth policy` prints a MutatingAdmissionPolicy, two
// ValidatingAdmissionPolicies (pods, Jobs' pod templates) and their bindings, for the namespaces the chart serves, with a --secret-map's own names compiled in.
// (test/integration's TestPoliciesInjectAsTheWebhookDoes runs the same objects in an API server.)
func TestPolicyPrintsTheInstall(t *testing.T) {
	file := filepath.Join(t.TempDir(), "map.yaml")
	if err := os.WriteFile(file, []byte("apiVersion: flowauth.io/v1alpha1\nkind: SecretMap\nsecrets:\n  DBT_CLOUD_TOKEN:\n    shape: string\n    keys: [{name: token}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := run(t, "", "policy", "--secret-map", file, "--name", "fa")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	docs := strings.Split(out, "---\n")
	if len(docs) != 6 {
		t.Fatalf("%d documents, want the three policies (inject, refuse pods, refuse Jobs) and their bindings:\n%s", len(docs), out)
	}
	var p admissionregistrationv1.MutatingAdmissionPolicy
	var b admissionregistrationv1.MutatingAdmissionPolicyBinding
	if err := yaml.UnmarshalStrict([]byte(docs[0]), &p); err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict([]byte(docs[1]), &b); err != nil {
		t.Fatal(err)
	}
	if p.Kind != "MutatingAdmissionPolicy" || p.Name != "fa-inject" || b.Spec.PolicyName != p.Name {
		t.Errorf("policy %s %q bound as %q", p.Kind, p.Name, b.Spec.PolicyName)
	}
	if got := b.Spec.MatchResources.NamespaceSelector.MatchLabels["flowauth.io/injection"]; got != "enabled" {
		t.Errorf("the binding selects %v, want the chart's flowauth.io/injection=enabled", b.Spec.MatchResources.NamespaceSelector)
	}
	found := false
	for _, v := range p.Spec.Variables {
		if v.Name == policy.MapVariable {
			found = strings.Contains(v.Expression, `n == "DBT_CLOUD_TOKEN" ? {"secret": dyn("dbt-cloud-token")`) && strings.Contains(v.Expression, `n == "AWS_CREDENTIALS" ?`)
		}
	}
	if !found {
		t.Errorf("the policy's map does not hold the built-in names and the --secret-map's DBT_CLOUD_TOKEN")
	}
}
