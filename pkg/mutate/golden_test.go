package mutate

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/flowauth/flowauth/pkg/secretmap"
)

var update = flag.Bool("update", false, "rewrite the golden out.yaml and findings.txt files")

// goldenCase is one folder of testdata/: in.yaml (the pod as the API server sends it), an optional
// namespace-defaults.txt and keys.yaml, and the golden out.yaml (the pod after flowauth) and findings.txt
// (status, warnings, denials).
type goldenCase struct {
	dir               string
	pod               *corev1.Pod
	namespaceDefaults string
	// keys, from an optional keys.yaml, turns key lookup on.
	keys *StaticKeys
	// namespace, from an optional namespace.yaml: the Namespace's annotations (its owner's
	// allow-list) and whether the webhook requires an allow-list.
	namespace StaticNamespace
}

// input is the case's mutate.Input for pod.
func (c goldenCase) input(pod *corev1.Pod, m *secretmap.Map) Input {
	in := Input{Pod: pod, NamespaceDefaults: c.namespaceDefaults, Map: m, SkipContainers: DefaultSkipContainers,
		NamespaceAnnotations: c.namespace.Annotations, RequireAllowList: c.namespace.RequireAllowList}
	if c.keys != nil {
		in.Keys, in.Missing = c.keys, c.keys.MissingSecret
	}
	return in
}

func goldenCases(t testing.TB) []goldenCase {
	t.Helper()
	dirs, err := filepath.Glob("testdata/*/in.yaml")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no golden cases found: %v", err)
	}
	var cases []goldenCase
	for _, in := range dirs {
		dir := filepath.Dir(in)
		c := goldenCase{dir: dir, pod: readPod(t, in)}
		if b, err := os.ReadFile(filepath.Join(dir, "namespace-defaults.txt")); err == nil {
			c.namespaceDefaults = strings.TrimSpace(string(b))
		}
		if b, err := os.ReadFile(filepath.Join(dir, "keys.yaml")); err == nil {
			c.keys = &StaticKeys{}
			if err := yaml.UnmarshalStrict(b, c.keys); err != nil {
				t.Fatalf("%s/keys.yaml: %v", dir, err)
			}
		}
		if b, err := os.ReadFile(filepath.Join(dir, "namespace.yaml")); err == nil {
			if err := yaml.UnmarshalStrict(b, &c.namespace); err != nil {
				t.Fatalf("%s/namespace.yaml: %v", dir, err)
			}
		}
		cases = append(cases, c)
	}
	return cases
}

func readPod(t testing.TB, path string) *corev1.Pod {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var p corev1.Pod
	if err := yaml.UnmarshalStrict(b, &p); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return &p
}

func renderFindings(r Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "flow run: %v\nchanged: %v\nstatus: %s\n", r.FlowRun, r.Changed, r.Status)
	for _, d := range r.Denials {
		fmt.Fprintf(&b, "deny %s: %s\n", d.Reason, d.Message)
	}
	for _, w := range r.Warnings {
		fmt.Fprintf(&b, "warn %s: %s\n", w.Reason, w.Message)
	}
	return b.String()
}

// compareGolden checks got against the file, or rewrites it with -update.
func compareGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o600); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./pkg/mutate -update to create it)", err)
	}
	if !bytes.Equal(want, got) {
		t.Errorf("%s differs from the result (-want +got):\n%s", path, cmp.Diff(string(want), string(got)))
	}
}

func TestGolden(t *testing.T) {
	m := secretmap.Builtin()
	for _, c := range goldenCases(t) {
		t.Run(filepath.Base(c.dir), func(t *testing.T) {
			before := c.pod.DeepCopy()
			res := Pod(c.input(c.pod, m))
			if diff := cmp.Diff(before, c.pod); diff != "" {
				t.Fatalf("Pod modified its input:\n%s", diff)
			}
			out := c.pod
			if res.Changed {
				out = res.Pod
			}
			y, err := yaml.Marshal(out)
			if err != nil {
				t.Fatal(err)
			}
			compareGolden(t, filepath.Join(c.dir, "out.yaml"), y)
			compareGolden(t, filepath.Join(c.dir, "findings.txt"), []byte(renderFindings(res)))

			// Idempotent: flowauth's own output, reinvoked, needs no change.
			again := Pod(c.input(out, m))
			if again.Changed {
				d, _ := yaml.Marshal(again.Pod)
				t.Errorf("second pass changed the pod again:\n%s", cmp.Diff(string(y), string(d)))
			}
			if again.Status != res.Status {
				t.Errorf("second pass status %q, first %q", again.Status, res.Status)
			}
		})
	}
}
