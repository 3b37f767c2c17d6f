package chart

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/flowauth/flowauth/pkg/mutate"
	"github.com/flowauth/flowauth/pkg/secretkeys"
)

var update = flag.Bool("update", false, "rewrite testdata/*.yaml from the chart as rendered now")

// release is what every render uses, so the golden files and the README's commands agree.
var release = []string{"template", "flowauth", "charts/flowauth", "--namespace", "flowauth-system"}

func TestLintPassesForEveryExample(t *testing.T) {
	for _, file := range append([]string{""}, examples(t)...) {
		args := []string{"lint", "charts/flowauth", "--strict"}
		if file != "" {
			args = append(args, "-f", file)
		}
		out := mustHelm(t, args...)
		if !strings.Contains(out, "0 chart(s) failed") || strings.Contains(out, "[WARNING]") {
			t.Errorf("helm %s:\n%s", strings.Join(args, " "), out)
		}
	}
}

// TestRenderedChartMatchesGolden keeps a readable copy of what each example installs: a change
// to the chart shows up as a diff of testdata/ in review. `go test ./test/chart -update` rewrites.
func TestRenderedChartMatchesGolden(t *testing.T) {
	for _, file := range append([]string{""}, examples(t)...) {
		name := "default"
		args := slices.Clone(release)
		if file != "" {
			name = strings.TrimSuffix(filepath.Base(file), ".yaml")
			args = append(args, "-f", file)
		}
		t.Run(name, func(t *testing.T) {
			got := mustHelm(t, args...)
			golden := filepath.Join("testdata", name+".yaml")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil { //nolint:gosec // golden file
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("helm %s differs from %s (-want +got); run with -update if intended:\n%s", strings.Join(args, " "), golden, diff)
			}
		})
	}
}

// TestSafeByDefault checks the properties a platform team relies on, for every example.
func TestSafeByDefault(t *testing.T) {
	for _, file := range append([]string{""}, examples(t)...) {
		args := slices.Clone(release)
		if file != "" {
			args = append(args, "-f", file)
		}
		objs := decode(t, mustHelm(t, args...))
		t.Run(filepath.Base(file), func(t *testing.T) {
			checkDeployment(t, find(t, objs, "Deployment"))
			checkWebhookConfiguration(t, find(t, objs, "MutatingWebhookConfiguration"))
			if pdb := find(t, objs, "PodDisruptionBudget"); fmt.Sprint(nested(pdb, "spec", "minAvailable")) != "1" {
				t.Errorf("PodDisruptionBudget minAvailable = %v, want 1", nested(pdb, "spec", "minAvailable"))
			}
		})
	}
}

func checkDeployment(t *testing.T, d *unstructured.Unstructured) {
	t.Helper()
	if got := fmt.Sprint(nested(d, "spec", "replicas")); got != "2" {
		t.Errorf("replicas = %v, want 2", got)
	}
	pod := nested(d, "spec", "template", "spec").(map[string]any)
	for path, want := range map[string]any{
		"securityContext.runAsNonRoot":                          true,
		"securityContext.seccompProfile.type":                   "RuntimeDefault",
		"containers.0.securityContext.readOnlyRootFilesystem":   true,
		"containers.0.securityContext.allowPrivilegeEscalation": false,
		"containers.0.securityContext.capabilities.drop.0":      "ALL",
		"containers.0.readinessProbe.httpGet.path":              "/readyz",
		"containers.0.livenessProbe.httpGet.path":               "/healthz",
		"containers.0.resources.limits.memory":                  "128Mi",
		"containers.0.volumeMounts.0.readOnly":                  true,
	} {
		if got := at(pod, path); got != want {
			t.Errorf("pod spec %s = %v, want %v", path, got, want)
		}
	}
	// Replicas spread over nodes: preferred by default, required where an example asks for it.
	preferred := at(pod, "affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution.0.podAffinityTerm.topologyKey")
	required := at(pod, "affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution.0.topologyKey")
	if preferred != "kubernetes.io/hostname" && required != "kubernetes.io/hostname" {
		t.Errorf("replicas are not spread over nodes: podAntiAffinity topologyKey %v (preferred), %v (required)", preferred, required)
	}
}

func checkWebhookConfiguration(t *testing.T, mwc *unstructured.Unstructured) {
	t.Helper()
	wh := at(mwc.Object, "webhooks.0").(map[string]any)
	for path, want := range map[string]any{
		"sideEffects":                   "NoneOnDryRun",
		"reinvocationPolicy":            "IfNeeded",
		"failurePolicy":                 "Fail",
		"timeoutSeconds":                float64(5),
		"clientConfig.service.path":     "/mutate-v1-pod",
		"rules.0.operations.0":          "CREATE",
		"rules.0.resources.0":           "pods",
		"matchConditions.0.name":        "flow-run-pods-only",
		"namespaceSelector.matchLabels": map[string]any{"flowauth.io/injection": "enabled"},
	} {
		if got := at(wh, path); !cmp.Equal(got, want) {
			t.Errorf("webhook %s = %v, want %v", path, got, want)
		}
	}
	if got := notIn(wh); !slices.Contains(got, "flowauth-system") || !slices.Contains(got, "kube-system") {
		t.Errorf("namespaceSelector must exclude the release namespace and kube-system, excludes %v", got)
	}
}

// notIn lists the namespaces the webhook's selector excludes by name.
func notIn(webhook map[string]any) []string {
	exprs, _ := at(webhook, "namespaceSelector.matchExpressions").([]any)
	for _, e := range exprs {
		e := e.(map[string]any)
		if e["key"] == "kubernetes.io/metadata.name" && e["operator"] == "NotIn" {
			var out []string
			for _, v := range e["values"].([]any) {
				out = append(out, v.(string))
			}
			return out
		}
	}
	return nil
}

// TestProfilingIsOptInAndLocal: Go's profiles are served only when asked for, and then on the pod's
// loopback only, where a port-forward reaches them and no Service or other pod does.
func TestProfilingIsOptInAndLocal(t *testing.T) {
	args := func(set ...string) []string {
		objs := decode(t, mustHelm(t, append(slices.Clone(release), set...)...))
		return stringsAt(find(t, objs, "Deployment").Object, "spec.template.spec.containers.0.args")
	}
	if got := args(); slices.ContainsFunc(got, func(a string) bool { return strings.HasPrefix(a, "--pprof-bind-address") }) {
		t.Errorf("profiling is on by default: %v", got)
	}
	if got := args("--set", "profiling.enabled=true", "--set", "profiling.port=6061"); !slices.Contains(got, "--pprof-bind-address=127.0.0.1:6061") {
		t.Errorf("profiling.enabled=true: args %v, want --pprof-bind-address=127.0.0.1:6061", got)
	}
}

// TestSkipListsAndSelectorsMatchTheBinary: the chart's defaults for the containers never
// injected and the key watch's selectors are the binary's, and key lookup passes its selectors.
func TestSkipListsAndSelectorsMatchTheBinary(t *testing.T) {
	args := func(set ...string) []string {
		objs := decode(t, mustHelm(t, append(slices.Clone(release), set...)...))
		return stringsAt(find(t, objs, "Deployment").Object, "spec.template.spec.containers.0.args")
	}
	if got, want := args(), "--skip-containers="+strings.Join(mutate.DefaultSkipContainers, ","); !slices.Contains(got, want) {
		t.Errorf("default args %v lack %s", got, want)
	}
	if got := args("--set", "skipContainers=null"); !slices.Contains(got, "--skip-containers=") {
		t.Errorf("skipContainers=null: args %v, want --skip-containers= (skip none)", got)
	}
	keys := args("--set", "secretLookup=keys")
	for _, want := range []string{"--secret-field-selector=" + secretkeys.DefaultSecretFieldSelector, "--secret-label-selector=",
		"--configmap-label-selector=" + secretkeys.DefaultConfigMapLabelSelector} {
		if !slices.Contains(keys, want) {
			t.Errorf("secretLookup=keys: args %v lack %s", keys, want)
		}
	}
}

// TestTLSModesAndPrivileges: each way of providing the certificate renders the objects it needs
// and exactly the RBAC it needs. The rules are also what the README's Install section lists.
func TestTLSModesAndPrivileges(t *testing.T) {
	tests := []struct {
		file      string
		wantKinds []string // beyond Deployment, Service, ServiceAccount, MWC, PDB
		args      []string // must be among the container args
		noArgs    []string // must not be
		rbac      []string
		set       string // a --set beside the file
	}{
		{
			file:      "",
			wantKinds: []string{"Secret/flowauth-certs", "ClusterRole/flowauth", "ClusterRoleBinding/flowauth", "Role/flowauth-certs", "RoleBinding/flowauth-certs", "ValidatingWebhookConfiguration/flowauth"},
			args: []string{"--cert-rotation", "--cert-secret=flowauth-system/flowauth-certs", "--cert-dns-name=flowauth.flowauth-system.svc",
				"--webhook-configuration=flowauth", "--namespace-defaults=true", "--secret-lookup=none"},
			rbac: []string{
				"ClusterRole: get,list,watch namespaces",
				"ClusterRole: list,watch admissionregistration.k8s.io/mutatingwebhookconfigurations,admissionregistration.k8s.io/validatingwebhookconfigurations",
				"ClusterRole: get,update admissionregistration.k8s.io/mutatingwebhookconfigurations,admissionregistration.k8s.io/validatingwebhookconfigurations [flowauth]",
				"ClusterRole: create,patch events.k8s.io/events",
				"Role flowauth-system: list,watch secrets",
				"Role flowauth-system: get,update secrets [flowauth-certs]",
			},
		},
		{
			file:      "values-cert-manager.yaml",
			wantKinds: []string{"Issuer/flowauth-selfsigned", "Certificate/flowauth-serving", "ServiceMonitor/flowauth", "ClusterRole/flowauth", "ClusterRoleBinding/flowauth"},
			noArgs:    []string{"--cert-rotation"},
			rbac:      []string{"ClusterRole: get,list,watch namespaces", "ClusterRole: create,patch events.k8s.io/events"},
		},
		{
			file:      "values-key-lookup.yaml",
			wantKinds: []string{"ConfigMap/flowauth-secret-map", "Secret/flowauth-certs"},
			args:      []string{"--secret-lookup=keys", "--secret-map=/etc/flowauth/secret-map/secret-map.yaml", "--cert-rotation"},
			rbac: []string{
				"ClusterRole: get,list,watch namespaces",
				"ClusterRole: list,watch admissionregistration.k8s.io/mutatingwebhookconfigurations,admissionregistration.k8s.io/validatingwebhookconfigurations",
				"ClusterRole: get,update admissionregistration.k8s.io/mutatingwebhookconfigurations,admissionregistration.k8s.io/validatingwebhookconfigurations [flowauth]",
				"ClusterRole: list,watch secrets,configmaps",
				"ClusterRole: create,patch events.k8s.io/events",
				"Role flowauth-system: list,watch secrets",
				"Role flowauth-system: get,update secrets [flowauth-certs]",
			},
		},
		{
			// Your own certificate: Namespaces are still read, so allow-lists are enforced.
			file:   "values-own-certificate.yaml",
			noArgs: []string{"--cert-rotation", "--cluster-connection=false"},
			args:   []string{"--namespace-defaults=false"},
			rbac:   []string{"ClusterRole: get,list,watch namespaces", "ClusterRole: create,patch events.k8s.io/events"},
		},
		{
			// Zero privilege only when asked for, and then said in the args (the binary logs
			// that allow-lists are not enforced).
			file:   "values-own-certificate.yaml",
			set:    "clusterConnection=false",
			noArgs: []string{"--cert-rotation", "--namespace-selector"},
			args:   []string{"--cluster-connection=false", "--namespace-defaults=false"},
			rbac:   []string{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file+" "+tt.set, func(t *testing.T) {
			args := slices.Clone(release)
			if tt.file != "" {
				args = append(args, "-f", filepath.Join("examples", tt.file))
			}
			if tt.set != "" {
				args = append(args, "--set", tt.set)
			}
			objs := decode(t, mustHelm(t, args...))
			rendered := kinds(objs)
			for _, k := range tt.wantKinds {
				if !slices.Contains(rendered, k) {
					t.Errorf("missing %s; rendered %v", k, rendered)
				}
			}
			containerArgs := stringsAt(find(t, objs, "Deployment").Object, "spec.template.spec.containers.0.args")
			for _, a := range tt.args {
				if !slices.Contains(containerArgs, a) {
					t.Errorf("args lack %s: %v", a, containerArgs)
				}
			}
			for _, a := range tt.noArgs {
				if slices.Contains(containerArgs, a) {
					t.Errorf("args must not have %s: %v", a, containerArgs)
				}
			}
			if tt.rbac != nil {
				slices.Sort(tt.rbac)
				if diff := cmp.Diff(tt.rbac, rbacRules(objs, nil)); diff != "" {
					t.Errorf("RBAC rules (-want +got):\n%s", diff)
				}
			}
			mwc := find(t, objs, "MutatingWebhookConfiguration")
			bundle, _ := at(mwc.Object, "webhooks.0.clientConfig.caBundle").(string)
			if (tt.file == "values-own-certificate.yaml") != (bundle != "") {
				t.Errorf("caBundle %q: only a provided certificate puts it in the chart", bundle)
			}
			token := at(find(t, objs, "Deployment").Object, "spec.template.spec.automountServiceAccountToken")
			if want := tt.set != "clusterConnection=false"; token != want {
				t.Errorf("automountServiceAccountToken = %v, want %v (a token only when the API is used)", token, want)
			}
		})
	}
}

// TestBadValuesFailAtInstallWithAClearMessage: values.schema.json and the chart's own checks.
func TestBadValuesFailAtInstallWithAClearMessage(t *testing.T) {
	tests := []struct {
		set  []string
		want string
	}{
		{[]string{"--set", "webhook.failurePolicy=Deny"}, "at '/webhook/failurePolicy': value must be one of 'Fail', 'Ignore'"},
		{[]string{"--set", "webhook.timeoutSeconds=60"}, "at '/webhook/timeoutSeconds': maximum: got 60, want 30"},
		{[]string{"--set", "replicaCount=0"}, "at '/replicaCount': minimum: got 0, want 1"},
		{[]string{"--set", "secretLookup=all"}, "at '/secretLookup': value must be one of 'none', 'keys'"},
		{[]string{"--set", "secretLookupSelectors.secretFields=type"}, "at '/secretLookupSelectors/secretFields': 'type' does not match pattern"},
		{[]string{"--set", "secretLookupSelectors.secretLabel=a"}, "additional properties 'secretLabel' not allowed"},
		{[]string{"--set", "missingSecret=block"}, "at '/missingSecret': value must be one of 'warn', 'deny', 'ignore'"},
		{[]string{"--set", "image.tag=1"}, "at '/image/tag': got number, want string"},
		{[]string{"--set", "image.repository="}, "image.repository is empty: a checkout's chart names no image, because none is published for a checkout. Install a release's chart"},
		{[]string{"--set", "replicas=3"}, "additional properties 'replicas' not allowed"},
		{[]string{"--set", "certs.validity=1y"}, "at '/certs/validity': '1y' does not match pattern"},
		{[]string{"--set", "webhook.namespaceSelector.matchLabels=null"}, "at '/webhook/namespaceSelector': 'anyOf' failed"},
		{[]string{"--set", "certs.secretName=Bad_Name"}, "at '/certs/secretName': 'Bad_Name' does not match pattern"},
		{[]string{"--set", "certs.caBundle=eA=="}, "certs.caBundle needs certs.secretName"},
		{[]string{"--set", "certManager.enabled=true", "--set", "certs.caBundle=eA==", "--set", "certs.secretName=mine"}, "certManager.enabled and certs.caBundle are exclusive"},
		{[]string{"--set", "missingSecret=deny"}, "missingSecret=deny has no effect with secretLookup=none"},
		{[]string{"--set", "profiling.enabled=true", "--set", "profiling.port=8080"}, "profiling.port=8080 is metrics.port's port too: choose another"},
		{[]string{"--set", "profiling.port=80"}, "at '/profiling/port': minimum: got 80, want 1,024"},
		{[]string{"--set", "hostNetwork.enabled=true", "--set", "hostNetwork.webhookPort=10250"}, "hostNetwork.webhookPort=10250 is the kubelet's API port on every node: on the host network choose another"},
		{[]string{"--set", "hostNetwork.enabled=true", "--set", "hostNetwork.healthProbePort=10256"}, "hostNetwork.healthProbePort=10256 is kube-proxy's healthz port on every node"},
		{[]string{"--set", "hostNetwork.enabled=true", "--set", "hostNetwork.metricsPort=30080"}, "hostNetwork.metricsPort=30080 is in the NodePort range"},
		{[]string{"--set", "hostNetwork.enabled=true", "--set", "hostNetwork.metricsPort=10270"}, "hostNetwork ports must differ: webhookPort=10270 metricsPort=10270"},
		{[]string{"--set", "hostNetwork.enabled=true", "--set", "networkPolicy.enabled=true"}, "networkPolicy.enabled has no effect on pods on the host network"},
		{[]string{"--set", "hostNetwork.enabled=true", "--set", "profiling.enabled=true"}, "profiling.enabled with hostNetwork.enabled would serve Go's profiles, unauthenticated, on the node's loopback"},
		{[]string{"--set", "securityContext.privileged=true"}, "at '/securityContext/privileged'"},
		{[]string{"--set", "podSecurityContext.runAsUser=0"}, "at '/podSecurityContext/runAsUser': minimum: got 0, want 1"},
		{[]string{"--set", "admission.mode=policies"}, "at '/admission/mode': value must be one of 'webhook', 'policy', 'auto', 'both'"},
		{[]string{"--set", "admission.mode=policy"}, "admission.mode=policy needs MutatingAdmissionPolicy in admissionregistration.k8s.io/v1, which Kubernetes serves from 1.36; this cluster is v"},
		{[]string{"--set", "admission.mode=policy", "--set", "secretMap=x", "--api-versions", "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy"}, "admission.mode=policy with a secretMap: the policies hold the map in their CEL, which Helm cannot compile; apply `kubectl flowauth policy --secret-map FILE` instead"},
		{[]string{"--set", "admission.mode=policy", "--set", "secretLookup=keys", "--api-versions", "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy"}, "admission.mode=policy with secretLookup=keys: a policy cannot read Secrets"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.set, " "), func(t *testing.T) {
			_, stderr, err := helm(append(slices.Clone(release), tt.set...)...)
			if err == nil {
				t.Fatalf("helm template %v succeeded; want an error with %q", tt.set, tt.want)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("helm template %v:\n%s\nwant it to say %q", tt.set, stderr, tt.want)
			}
		})
	}
}

// rbacRules flattens every Role and ClusterRole into one line per rule, sorted; rename maps
// object names in resourceNames, so two renderings with other naming compare equal.
func rbacRules(objs []*unstructured.Unstructured, rename map[string]string) []string {
	out := []string{}
	for _, o := range objs {
		if o.GetKind() != "Role" && o.GetKind() != "ClusterRole" {
			continue
		}
		scope := "ClusterRole"
		if o.GetKind() == "Role" {
			scope = "Role " + o.GetNamespace()
		}
		rules, _ := o.Object["rules"].([]any)
		for _, r := range rules {
			r := r.(map[string]any)
			var resources []string
			for _, g := range stringsAt(r, "apiGroups") {
				for _, res := range stringsAt(r, "resources") {
					resources = append(resources, strings.TrimPrefix(g+"/"+res, "/"))
				}
			}
			line := fmt.Sprintf("%s: %s %s", scope, strings.Join(stringsAt(r, "verbs"), ","), strings.Join(resources, ","))
			if names := stringsAt(r, "resourceNames"); len(names) > 0 {
				for i, n := range names {
					if m, ok := rename[n]; ok {
						names[i] = m
					}
				}
				line += " [" + strings.Join(names, ",") + "]"
			}
			out = append(out, line)
		}
	}
	slices.Sort(out)
	return out
}

// at walks a dotted path through maps and lists ("containers.0.args").
func at(obj any, path string) any {
	for _, p := range strings.Split(path, ".") {
		switch v := obj.(type) {
		case map[string]any:
			obj = v[p]
		case []any:
			var i int
			if _, err := fmt.Sscan(p, &i); err != nil || i >= len(v) {
				return nil
			}
			obj = v[i]
		default:
			return nil
		}
	}
	return obj
}

func nested(o *unstructured.Unstructured, path ...string) any {
	return at(o.Object, strings.Join(path, "."))
}

func stringsAt(obj any, path string) []string {
	list, _ := at(obj, path).([]any)
	out := make([]string, 0, len(list))
	for _, v := range list {
		out = append(out, fmt.Sprint(v))
	}
	return out
}
