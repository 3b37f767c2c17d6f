package admission

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/flowauth/flowauth/pkg/mutate"
	"github.com/flowauth/flowauth/pkg/secretmap"
)

// TestPodViewSeesWhatMutateReads: mutate.Pod decides the same on the decoded view of a pod as on
// the whole pod, and the patch is the same, for every golden case of pkg/mutate (with its keys
// and namespace defaults) and every harness profile. A field mutate starts to read that
// podView does not decode fails here.
func TestPodViewSeesWhatMutateReads(t *testing.T) {
	type source struct {
		name     string
		raw      []byte
		defaults string
		keys     *mutate.StaticKeys
	}
	var sources []source
	ins, _ := filepath.Glob("../mutate/testdata/*/in.yaml")
	for _, in := range ins {
		dir := filepath.Dir(in)
		s := source{name: filepath.Base(dir), raw: yamlToJSON(t, in)}
		if b, err := os.ReadFile(filepath.Join(dir, "namespace-defaults.txt")); err == nil {
			s.defaults = strings.TrimSpace(string(b))
		}
		if b, err := os.ReadFile(filepath.Join(dir, "keys.yaml")); err == nil {
			s.keys = &mutate.StaticKeys{}
			if err := yaml.UnmarshalStrict(b, s.keys); err != nil {
				t.Fatal(err)
			}
		}
		sources = append(sources, s)
	}
	for _, p := range profiles {
		var rev admissionv1.AdmissionReview
		if err := json.Unmarshal(readProfile(t, p), &rev); err != nil {
			t.Fatal(err)
		}
		sources = append(sources, source{name: "harness " + p, raw: rev.Request.Object.Raw})
	}
	if len(sources) < 20 {
		t.Fatalf("only %d pods to compare", len(sources))
	}
	m := secretmap.Builtin()
	for _, s := range sources {
		t.Run(s.name, func(t *testing.T) {
			var whole corev1.Pod
			if err := json.Unmarshal(s.raw, &whole); err != nil {
				t.Fatal(err)
			}
			view, err := decodePod(s.raw)
			if err != nil {
				t.Fatal(err)
			}
			in := mutate.Input{Pod: &whole, Namespace: "flows", NamespaceDefaults: s.defaults, Map: m}
			if s.keys != nil {
				in.Keys, in.Missing = s.keys, s.keys.MissingSecret
			}
			fromWhole := mutate.Pod(in)
			in.Pod = view
			fromView := mutate.Pod(in)
			if diff := cmp.Diff(decision(t, &whole, fromWhole), decision(t, view, fromView)); diff != "" {
				t.Errorf("mutate decides differently on the pod view (-whole +view):\n%s", diff)
			}
		})
	}
}

// decision is what a mutate.Result means for the answer: findings, status and the patch.
func decision(t *testing.T, original *corev1.Pod, r mutate.Result) map[string]any {
	t.Helper()
	d := map[string]any{"flowRun": r.FlowRun, "denials": r.Denials, "warnings": r.Warnings, "status": r.Status, "injected": r.Injected}
	if r.Changed {
		ops, err := jsonPatch(original, r.Pod)
		if err != nil {
			t.Fatal(err)
		}
		patch, err := encodePatch(ops)
		if err != nil {
			t.Fatal(err)
		}
		d["patch"] = string(patch)
	}
	return d
}
