package chart

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// The kustomize config and the chart name things differently (namePrefix against the release
// name); these placeholders let the two renderings be compared field by field.
var (
	chartNames     = map[string]string{"flowauth": "<webhook-configuration>", "flowauth-certs": "<cert-secret>"}
	kustomizeNames = map[string]string{"flowauth-webhook-configuration": "<webhook-configuration>", "flowauth-certs": "<cert-secret>"}
)

// TestKustomizeConfigMatchesTheChart keeps config/ (kubebuilder style) and the chart's defaults
// from drifting: the same webhook registration, RBAC, container args and pod hardening.
func TestKustomizeConfigMatchesTheChart(t *testing.T) {
	tests := []struct {
		name       string
		component  string // config/<component> in place of selfcerts
		chartFlags []string
	}{
		{name: "self-managed certificates", component: "selfcerts"},
		{name: "cert-manager", component: "certmanager", chartFlags: []string{"--set", "certManager.enabled=true"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			chart := decode(t, mustHelm(t, append(slices.Clone(release), tt.chartFlags...)...))
			kust := decode(t, kustomize(t, tt.component))

			for _, kind := range []string{"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"} {
				if diff := cmp.Diff(webhookEntries(t, chart, kind), webhookEntries(t, kust, kind)); diff != "" {
					t.Errorf("%s differs (-chart +config):\n%s", kind, diff)
				}
			}
			if diff := cmp.Diff(rbacRules(chart, chartNames), rbacRules(kust, kustomizeNames)); diff != "" {
				t.Errorf("RBAC differs (-chart +config):\n%s", diff)
			}
			// Self-managed TLS ships the policy that keeps flowauth's own updates to the caBundle:
			// the same policy but for the names each install gives its objects.
			if tt.component == "selfcerts" {
				checkCABundlePolicy(t, chart)
				checkCABundlePolicy(t, kust)
				chartPolicy, kustPolicy := find(t, chart, "ValidatingAdmissionPolicy"), find(t, kust, "ValidatingAdmissionPolicy")
				if diff := cmp.Diff(policyWords(chartPolicy), policyWords(kustPolicy)); diff != "" {
					t.Errorf("the caBundle-only policies differ beyond their names (-chart +config):\n%s", diff)
				}
				binding := find(t, kust, "ValidatingAdmissionPolicyBinding")
				if got := at(binding.Object, "spec.policyName"); got != kustPolicy.GetName() {
					t.Errorf("config's binding names policy %v, but the policy is %s", got, kustPolicy.GetName())
				}
			}
			chartPod, kustPod := podSpec(t, chart, chartNames), podSpec(t, kust, kustomizeNames)
			if diff := cmp.Diff(chartPod, kustPod); diff != "" {
				t.Errorf("pod spec differs (-chart +config):\n%s", diff)
			}
			for _, kind := range []string{"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"} {
				_, chartInject := find(t, chart, kind).GetAnnotations()["cert-manager.io/inject-ca-from"]
				_, kustInject := find(t, kust, kind).GetAnnotations()["cert-manager.io/inject-ca-from"]
				if chartInject != kustInject || chartInject != (tt.component == "certmanager") {
					t.Errorf("%s cainjector annotation: chart %v, config %v", kind, chartInject, kustInject)
				}
			}
		})
	}
}

// kustomize renders config/default, with component in place of selfcerts.
func kustomize(t *testing.T, component string) string {
	t.Helper()
	dir := filepath.Join(root, "config", "default")
	if component != "selfcerts" {
		// A copy of config/ whose default uses the other component, as the README tells users to do.
		copied := filepath.Join(t.TempDir(), "config")
		if err := os.CopyFS(copied, os.DirFS(filepath.Join(root, "config"))); err != nil {
			t.Fatal(err)
		}
		dir = filepath.Join(copied, "default")
		file := filepath.Join(dir, "kustomization.yaml")
		src, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		text := strings.Replace(string(src), "- ../selfcerts", "- ../"+component, 1)
		if err := os.WriteFile(file, []byte(text), 0o600); err != nil { //nolint:gosec // a path under t.TempDir()
			t.Fatal(err)
		}
	}
	return kubectl(t, "kustomize", dir)
}

// webhookEntries are the registrations minus how the webhook is reached (service names differ).
func webhookEntries(t *testing.T, objs []*unstructured.Unstructured, kind string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, wh := range at(find(t, objs, kind).Object, "webhooks").([]any) {
		entry := deepCopy(wh.(map[string]any))
		path := at(entry, "clientConfig.service.path")
		delete(entry, "clientConfig")
		entry["path"] = path
		out = append(out, entry)
	}
	return out
}

// podSpec is the Deployment's pod spec with object names replaced by placeholders and the
// labels (chart-specific) left out.
func podSpec(t *testing.T, objs []*unstructured.Unstructured, names map[string]string) map[string]any {
	t.Helper()
	d := find(t, objs, "Deployment")
	spec := deepCopy(at(d.Object, "spec.template.spec").(map[string]any))
	delete(spec, "serviceAccountName")
	delete(spec, "affinity") // selects by labels, which differ; its shape is checked in TestSafeByDefault
	container := at(spec, "containers.0").(map[string]any)
	delete(container, "image")
	var args []any
	for _, a := range stringsAt(container, "args") {
		flag, value, _ := strings.Cut(a, "=")
		switch flag {
		case "--cert-dns-name":
			value = "<service>.<namespace>.svc"
		case "--webhook-configuration":
			value = names[value]
		case "--cert-secret":
			_, name, _ := strings.Cut(value, "/")
			value = "<namespace>/" + names[name]
		}
		if value != "" {
			a = flag + "=" + value
		}
		args = append(args, a)
	}
	container["args"] = args
	volume := at(spec, "volumes.0.secret").(map[string]any)
	volume["secretName"] = names[volume["secretName"].(string)]
	return spec
}

func deepCopy(m map[string]any) map[string]any {
	return (&unstructured.Unstructured{Object: m}).DeepCopy().Object
}

// checkCABundlePolicy: the policy guards the install's own webhook configurations, for the
// install's own ServiceAccount.
func checkCABundlePolicy(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	policy := find(t, objs, "ValidatingAdmissionPolicy")
	names := stringsAt(policy.Object, "spec.matchConstraints.resourceRules.0.resourceNames")
	if mwc := find(t, objs, "MutatingWebhookConfiguration").GetName(); !slices.Equal(names, []string{mwc}) {
		t.Errorf("policy %s guards %v, want the webhook configuration %s", policy.GetName(), names, mwc)
	}
	deploy := find(t, objs, "Deployment")
	sa, _ := at(deploy.Object, "spec.template.spec.serviceAccountName").(string)
	user := fmt.Sprintf("request.userInfo.username == %q", "system:serviceaccount:"+deploy.GetNamespace()+":"+sa)
	if got := at(policy.Object, "spec.matchConditions.0.expression"); got != user {
		t.Errorf("policy %s matches %v, want %s", policy.GetName(), got, user)
	}
}

// policyWords is a policy's spec as words, without the names checkCABundlePolicy checks: the
// same rule, however each tool folds its lines.
func policyWords(policy *unstructured.Unstructured) string {
	spec := deepCopy(policy.Object["spec"].(map[string]any))
	delete(spec, "matchConditions")
	rules := at(spec, "matchConstraints.resourceRules.0").(map[string]any)
	delete(rules, "resourceNames")
	return strings.Join(strings.Fields(fmt.Sprint(spec)), " ")
}
