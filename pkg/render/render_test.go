package render

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	flowadmission "github.com/flowauth/flowauth/pkg/admission"
	"github.com/flowauth/flowauth/pkg/mutate"
	"github.com/flowauth/flowauth/pkg/secretmap"
)

// TestRenderIsTheWebhooksDecision: for every golden case of pkg/mutate, render gives the same
// patch, warnings and denial as the webhook answering an AdmissionReview over HTTP (its serving
// path, fast decode included), and the rendered pod is the case's golden out.yaml.
func TestRenderIsTheWebhooksDecision(t *testing.T) {
	dirs, err := filepath.Glob("../mutate/testdata/*/in.yaml")
	if err != nil || len(dirs) < 20 {
		t.Fatalf("golden cases: %v (%d)", err, len(dirs))
	}
	for _, in := range dirs {
		dir := filepath.Dir(in)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			pod := readYAML(t, in)
			namespace := "flows"
			if meta, _ := pod["metadata"].(map[string]any); meta["namespace"] != nil {
				namespace = meta["namespace"].(string)
			}
			c := Cluster{Map: secretmap.Builtin(), Namespace: namespace, NamespaceDefaults: map[string]string{}}
			if b, err := os.ReadFile(filepath.Join(dir, "namespace-defaults.txt")); err == nil {
				c.NamespaceDefaults[namespace] = strings.TrimSpace(string(b))
			}
			if b, err := os.ReadFile(filepath.Join(dir, "namespace.yaml")); err == nil {
				var ns mutate.StaticNamespace
				if err := yaml.UnmarshalStrict(b, &ns); err != nil {
					t.Fatal(err)
				}
				c.NamespaceAnnotations = map[string]map[string]string{namespace: ns.Annotations}
				c.RequireAllowList = ns.RequireAllowList
			}
			if b, err := os.ReadFile(filepath.Join(dir, "keys.yaml")); err == nil {
				keys := &mutate.StaticKeys{}
				if err := yaml.UnmarshalStrict(b, keys); err != nil {
					t.Fatal(err)
				}
				c.Keys, c.Missing = keys, keys.MissingSecret
			}
			got, err := Render(context.Background(), pod, c)
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Templates) != 1 {
				t.Fatalf("%d templates for a pod", len(got.Templates))
			}
			tmpl := got.Templates[0]

			answer := webhookAnswer(t, c, namespace, pod)
			if !bytes.Equal(tmpl.Patch, answer.Patch) {
				t.Errorf("render's patch differs from the webhook's:\n%s\n%s", tmpl.Patch, answer.Patch)
			}
			if !slices.Equal(tmpl.Warnings, answer.Warnings) {
				t.Errorf("warnings: render %q, webhook %q", tmpl.Warnings, answer.Warnings)
			}
			denial := ""
			if !answer.Allowed {
				denial = answer.Result.Message
			}
			if tmpl.Denial != denial {
				t.Errorf("denial: render %q, webhook %q", tmpl.Denial, denial)
			}
			if tmpl.Denial != "" {
				return
			}
			var rendered, want corev1.Pod
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(got.Rendered, &rendered); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(filepath.Join(dir, "out.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			if err := yaml.UnmarshalStrict(b, &want); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(&want, &rendered); diff != "" {
				t.Errorf("rendered pod differs from out.yaml (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRenderShowsWhatAJobsPodsGet: a Job's and a CronJob's pod template get what their pods will;
// the rest of the object is left as it was, and an object without a template is passed through.
func TestRenderShowsWhatAJobsPodsGet(t *testing.T) {
	template := map[string]any{
		"metadata": map[string]any{"annotations": map[string]any{mutate.AnnotationSecrets: "GITHUB_ACCESS_TOKEN"}},
		"spec":     map[string]any{"restartPolicy": "Never", "containers": []any{map[string]any{"name": "flow", "image": "flow"}}},
	}
	for _, tc := range []struct {
		name string
		obj  map[string]any
		path []string
	}{
		{"Job", map[string]any{"apiVersion": "batch/v1", "kind": "Job", "metadata": map[string]any{"name": "j"}, "spec": map[string]any{"backoffLimit": 0, "template": template}}, []string{"spec", "template"}},
		{"CronJob", map[string]any{"apiVersion": "batch/v1", "kind": "CronJob", "metadata": map[string]any{"name": "c"},
			"spec": map[string]any{"schedule": "* * * * *", "jobTemplate": map[string]any{"spec": map[string]any{"template": template}}}}, []string{"spec", "jobTemplate", "spec", "template"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Render(context.Background(), tc.obj, Cluster{Map: secretmap.Builtin(), Namespace: "flows"})
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Templates) != 1 || got.Templates[0].Status != "injected=GITHUB_ACCESS_TOKEN" || got.Templates[0].Path != strings.Join(tc.path, ".") {
				t.Fatalf("templates: %+v", got.Templates)
			}
			_, tmpl := lookup(got.Rendered, tc.path)
			env := tmpl["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)["env"].([]any)
			if len(env) == 0 || env[0].(map[string]any)["name"] != "PREFECT__CONTEXT__SECRETS__GITHUB_ACCESS_TOKEN" {
				t.Errorf("the template's container env: %v", env)
			}
			if _, orig := lookup(tc.obj, tc.path); orig["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)["env"] != nil {
				t.Error("render changed its input")
			}
		})
	}
	cm := map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"name": "x"}, "data": map[string]any{"a": "b"}}
	got, err := Render(context.Background(), cm, Cluster{Map: secretmap.Builtin(), Namespace: "flows"})
	if err != nil || len(got.Templates) != 0 || !cmp.Equal(got.Rendered, cm) {
		t.Errorf("a ConfigMap: %+v, %v", got, err)
	}
}

// webhookAnswer posts pod as a CREATE AdmissionReview to the webhook's HTTP handler.
func webhookAnswer(t *testing.T, c Cluster, namespace string, pod map[string]any) *admissionv1.AdmissionResponse {
	t.Helper()
	h := flowadmission.NewPodWebhook(&flowadmission.PodMutator{
		Secrets: secretmap.StaticStore(c.Map), Namespaces: staticNamespaces{defaults: c.NamespaceDefaults, annotations: c.NamespaceAnnotations}, RequireAllowList: c.RequireAllowList, Keys: c.Keys, Missing: c.Missing,
		SkipContainers: mutate.DefaultSkipContainers, // the webhook's default, as render's
	})
	raw, _ := json.Marshal(pod)
	review := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: "golden", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"}, Operation: admissionv1.Create, Namespace: namespace,
			Object: runtime.RawExtension{Raw: raw}},
	}
	body, _ := json.Marshal(review)
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Post(srv.URL, "application/json", bytes.NewReader(body)) //nolint:noctx // a test server
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var answer admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil {
		t.Fatal(err)
	}
	return answer.Response
}

func readYAML(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestDeprecatedServiceAccountFieldChoosesTheList: the API server copies a pod's deprecated
// serviceAccount field to serviceAccountName before admission, so the webhook judges such a pod
// by that account's allow-list. On the old main render judged the manifest by the default
// account's list (the namespace's) and refused what the cluster would allow.
func TestDeprecatedServiceAccountFieldChoosesTheList(t *testing.T) {
	job := map[string]any{"apiVersion": "batch/v1", "kind": "Job", "metadata": map[string]any{"name": "run"},
		"spec": map[string]any{"template": map[string]any{
			"metadata": map[string]any{"annotations": map[string]any{mutate.AnnotationSecrets: "AWS_CREDENTIALS", mutate.SecretOverridePrefix + "AWS_CREDENTIALS": "team-a-aws"}},
			"spec":     map[string]any{"serviceAccount": "team-a", "containers": []any{map[string]any{"name": "flow", "image": "prefect"}}},
		}}}
	c := Cluster{Map: secretmap.Builtin(), Namespace: "flows", NamespaceAnnotations: map[string]map[string]string{"flows": {
		mutate.AnnotationAllowedSecrets:           "GITHUB_ACCESS_TOKEN",
		mutate.AllowedSecretsForPrefix + "team-a": "AWS_CREDENTIALS=team-a-aws",
	}}}
	got, err := Render(context.Background(), job, c)
	if err != nil {
		t.Fatal(err)
	}
	if d := got.Templates[0].Denial; d != "" || !strings.Contains(got.Templates[0].Status, "AWS_CREDENTIALS") {
		t.Errorf("judged by the namespace's list, not team-a's: denial %q, status %q", d, got.Templates[0].Status)
	}
}
