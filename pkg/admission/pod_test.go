package admission

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/go-logr/logr/funcr"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	"sigs.k8s.io/yaml"

	"github.com/flowauth/flowauth/pkg/mutate"
	"github.com/flowauth/flowauth/pkg/secretmap"
)

// staticDefaults gives every namespace the same defaults.
type staticDefaults string

func (s staticDefaults) Namespace(context.Context, string) (Namespace, error) {
	return Namespace{Found: true, Annotations: map[string]string{mutate.AnnotationSecrets: string(s)}}, nil
}

// staticNamespace gives every namespace the same Namespace.
type staticNamespace Namespace

func (s staticNamespace) Namespace(context.Context, string) (Namespace, error) {
	return Namespace(s), nil
}

func newMutator(defaults string) *PodMutator {
	return &PodMutator{
		Secrets:    secretmap.StaticStore(secretmap.Builtin()),
		Namespaces: staticDefaults(defaults),
		Metrics:    NewMetrics(prometheus.NewRegistry()),
		// The webhook's default, as the golden cases'.
		SkipContainers: mutate.DefaultSkipContainers,
	}
}

func request(op admissionv1.Operation, raw []byte) admission.Request {
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID: "uid-1", Operation: op, Namespace: "flows",
		Kind:     metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		Object:   runtime.RawExtension{Raw: raw},
	}}
}

func yamlToJSON(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func applyPatch(t *testing.T, raw []byte, resp admission.Response) []byte {
	t.Helper()
	if len(resp.Patch) == 0 && len(resp.Patches) == 0 {
		return raw
	}
	ops, err := resp.Patch, error(nil)
	if ops == nil {
		ops, err = json.Marshal(resp.Patches)
	}
	if err != nil {
		t.Fatal(err)
	}
	p, err := jsonpatch.DecodePatch(ops)
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.Apply(raw)
	if err != nil {
		t.Fatalf("patch does not apply to the request's pod: %v\n%s", err, ops)
	}
	return out
}

// TestPatchGivesGoldenPod: for every golden case of pkg/mutate, the JSON Patch the handler
// returns, applied to the pod as sent, gives exactly the pure function's result.
func TestPatchGivesGoldenPod(t *testing.T) {
	ins, _ := filepath.Glob("../mutate/testdata/*/in.yaml")
	if len(ins) == 0 {
		t.Fatal("no golden cases")
	}
	for _, in := range ins {
		dir := filepath.Dir(in)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			defaults := ""
			if b, err := os.ReadFile(filepath.Join(dir, "namespace-defaults.txt")); err == nil {
				defaults = strings.TrimSpace(string(b))
			}
			raw := yamlToJSON(t, in)
			h := newMutator(defaults)
			if b, err := os.ReadFile(filepath.Join(dir, "namespace.yaml")); err == nil {
				var ns mutate.StaticNamespace
				if err := yaml.UnmarshalStrict(b, &ns); err != nil {
					t.Fatal(err)
				}
				annotations := map[string]string{mutate.AnnotationSecrets: defaults}
				maps.Copy(annotations, ns.Annotations)
				h.Namespaces, h.RequireAllowList = staticNamespace{Found: true, Annotations: annotations}, ns.RequireAllowList
			}
			if b, err := os.ReadFile(filepath.Join(dir, "keys.yaml")); err == nil {
				keys := &mutate.StaticKeys{}
				if err := yaml.UnmarshalStrict(b, keys); err != nil {
					t.Fatal(err)
				}
				h.Keys, h.Missing = keys, keys.MissingSecret
			}
			resp := h.Handle(context.Background(), request(admissionv1.Create, raw))
			findings, _ := os.ReadFile(filepath.Join(dir, "findings.txt"))
			if strings.Contains(string(findings), "\ndeny ") {
				if resp.Allowed || resp.Result.Code != http.StatusForbidden || len(resp.Patch) > 0 {
					t.Fatalf("want a denial, got allowed=%v code=%d", resp.Allowed, resp.Result.Code)
				}
				return
			}
			if !resp.Allowed {
				t.Fatalf("denied: %v", resp.Result)
			}
			var got, want corev1.Pod
			if err := json.Unmarshal(applyPatch(t, raw, resp), &got); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(yamlToJSON(t, filepath.Join(dir, "out.yaml")), &want); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("patched pod differs from out.yaml (-want +got):\n%s", diff)
			}
			if n := strings.Count(string(findings), "\nwarn "); n != len(resp.Warnings) {
				t.Errorf("%d warnings returned, findings.txt has %d: %q", len(resp.Warnings), n, resp.Warnings)
			}
		})
	}
}

// TestPatchKeepsUnknownFields: a pod field newer than this binary's types must survive; the
// patch only adds.
func TestPatchKeepsUnknownFields(t *testing.T) {
	raw := []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"generateName":"run-","annotations":{"flowauth.io/secrets":"GITHUB_ACCESS_TOKEN"}},
"spec":{"futureField":{"x":1},"containers":[{"name":"flow","image":"i","futureContainerField":true}]}}`)
	resp := newMutator("").Handle(context.Background(), request(admissionv1.Create, raw))
	var ops []struct{ Op, Path string }
	if err := json.Unmarshal(resp.Patch, &ops); err != nil || len(ops) == 0 {
		t.Fatalf("no JSON Patch: %v %s", err, resp.Patch)
	}
	for _, op := range ops {
		if op.Op != "add" {
			t.Errorf("patch has %s %s; only adds are allowed", op.Op, op.Path)
		}
	}
	out := string(applyPatch(t, raw, resp))
	for _, want := range []string{`"futureField":{"x":1}`, `"futureContainerField":true`, `"PREFECT__CONTEXT__SECRETS__GITHUB_ACCESS_TOKEN"`} {
		if !strings.Contains(out, want) {
			t.Errorf("patched pod lacks %s:\n%s", want, out)
		}
	}
}

func TestOnlyPodCreateIsMutated(t *testing.T) {
	raw := yamlToJSON(t, "../mutate/testdata/prefect1-agent-job-pod/in.yaml")
	for _, op := range []admissionv1.Operation{admissionv1.Update, admissionv1.Delete, admissionv1.Connect} {
		resp := newMutator("").Handle(context.Background(), request(op, raw))
		if !resp.Allowed || len(resp.Patch) > 0 {
			t.Errorf("%s: allowed=%v patches=%d, want allowed unchanged", op, resp.Allowed, len(resp.Patch))
		}
	}
	sub := request(admissionv1.Create, raw)
	sub.SubResource = "ephemeralcontainers"
	if resp := newMutator("").Handle(context.Background(), sub); !resp.Allowed || len(resp.Patch) > 0 {
		t.Errorf("subresource: allowed=%v patches=%d", resp.Allowed, len(resp.Patch))
	}
}

// TestBadObjectIsABadRequest: an object that may be a flow run but does not decode as a pod is a
// 400. (Objects that mention neither flowauth.io/secrets nor a Prefect label are let through
// unread: controller-runtime has already checked that they are JSON.)
func TestBadObjectIsABadRequest(t *testing.T) {
	for name, raw := range map[string]string{
		"not json":          `{"metadata":{"annotations":{"flowauth.io/secrets":`,
		"metadata a string": `{"metadata":"x","flowauth.io/secrets":1}`,
		"not an object":     `["flowauth.io/secrets"]`,
		"spec wrong type":   `{"metadata":{"annotations":{"flowauth.io/secrets":"AWS_CREDENTIALS"}},"spec":{"containers":"flow"}}`,
	} {
		resp := newMutator("").Handle(context.Background(), request(admissionv1.Create, []byte(raw)))
		if resp.Allowed || resp.Result == nil || resp.Result.Code != http.StatusBadRequest || !strings.HasPrefix(resp.Result.Message, "flowauth: ") {
			t.Errorf("%s: got allowed=%v result=%+v, want a 400 that says it is flowauth", name, resp.Allowed, resp.Result)
		}
	}
}

func TestMetricsCountOutcomes(t *testing.T) {
	m := newMutator("")
	handle := func(path string) {
		m.Handle(context.Background(), request(admissionv1.Create, yamlToJSON(t, path)))
	}
	handle("../mutate/testdata/not-a-flow-run/in.yaml")
	handle("../mutate/testdata/unknown-name/in.yaml")
	handle("../mutate/testdata/invalid-names-denied/in.yaml")
	handle("../mutate/testdata/opted-out/in.yaml")
	for _, tt := range []struct {
		c    prometheus.Collector
		want float64
	}{
		{m.Metrics.requests.WithLabelValues(resultPassed), 1},
		{m.Metrics.requests.WithLabelValues(resultMutated), 1},
		{m.Metrics.requests.WithLabelValues(resultDenied), 1},
		{m.Metrics.requests.WithLabelValues(resultOptedOut), 1},
		{m.Metrics.injections.WithLabelValues(customLabel, "injected"), 2},
		{m.Metrics.warnings.WithLabelValues("UnknownSecretName"), 2},
		{m.Metrics.denials.WithLabelValues("InvalidSecretName"), 3},
	} {
		if got := testutil.ToFloat64(tt.c); got != tt.want {
			t.Errorf("%v = %v, want %v", tt.c, got, tt.want)
		}
	}
}

// TestFastPatchMatchesGeneralDiff: the append-only patch and the general JSON diff give the same
// document for every golden case, and the append-only path is the one taken.
func TestFastPatchMatchesGeneralDiff(t *testing.T) {
	ins, _ := filepath.Glob("../mutate/testdata/*/in.yaml")
	for _, in := range ins {
		dir := filepath.Dir(in)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			var original, mutated corev1.Pod
			if err := json.Unmarshal(yamlToJSON(t, in), &original); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(yamlToJSON(t, filepath.Join(dir, "out.yaml")), &mutated); err != nil {
				t.Fatal(err)
			}
			fast, ok := appendOnlyPatch(&original, &mutated)
			if !ok {
				t.Fatal("golden mutation is not append-only")
			}
			general, err := diffPatch(&original, &mutated)
			if err != nil {
				t.Fatal(err)
			}
			encoded, err := encodePatch(fast)
			if err != nil {
				t.Fatal(err)
			}
			if library, _ := json.Marshal(fast); !jsonpatch.Equal(encoded, library) {
				t.Errorf("encodePatch differs from the library's encoding:\n%s\n%s", encoded, library)
			}
			raw, _ := json.Marshal(&original)
			a := applyPatch(t, raw, admission.Response{Patches: fast})
			b := applyPatch(t, raw, admission.Response{Patches: general})
			var pa, pb corev1.Pod
			_ = json.Unmarshal(a, &pa)
			_ = json.Unmarshal(b, &pb)
			if diff := cmp.Diff(pb, pa); diff != "" {
				t.Errorf("fast patch differs from the general diff (-general +fast):\n%s", diff)
			}
		})
	}
}

// failingNamespaces cannot read any namespace, as when flowauth's RBAC lost namespaces get.
type failingNamespaces struct{ err error }

func (f failingNamespaces) Namespace(context.Context, string) (Namespace, error) {
	return Namespace{}, f.err
}

// TestErrorsAreCountedAndLogged: a request flowauth cannot answer is a 503 that says what
// failed, counted as an error and logged with the namespace and the pod (the
// FlowauthAdmissionErrors runbook starts from that line), with nothing of the pod's values.
func TestErrorsAreCountedAndLogged(t *testing.T) {
	m := newMutator("")
	m.Namespaces = failingNamespaces{errors.New(`namespaces "flows" is forbidden`)}
	var logged []string
	ctx := logf.IntoContext(context.Background(), funcr.New(func(prefix, args string) { logged = append(logged, args) }, funcr.Options{}))
	pod := `{"metadata":{"name":"flow-1","labels":{"prefect.io/flow-run-id":"1"}},"spec":{"containers":[{"name":"flow","env":[{"name":"TOKEN","value":"s3cr3t-value"}]}]}}`
	resp := m.Handle(ctx, request(admissionv1.Create, []byte(pod)))
	if resp.Allowed || resp.Result == nil || resp.Result.Code != http.StatusServiceUnavailable || !strings.Contains(resp.Result.Message, `reading namespace "flows"`) {
		t.Fatalf("got allowed=%v result=%+v, want a 503 naming the namespace read", resp.Allowed, resp.Result)
	}
	if got := testutil.ToFloat64(m.Metrics.requests.WithLabelValues(resultError)); got != 1 {
		t.Errorf("errors counted: %v, want 1", got)
	}
	if len(logged) != 1 || !strings.Contains(logged[0], `"namespace"="flows"`) || !strings.Contains(logged[0], `"pod"="flow-1"`) || !strings.Contains(logged[0], "forbidden") {
		t.Errorf("logged %q: want one line with the namespace, the pod and the error", logged)
	}
	if strings.Contains(strings.Join(logged, ""), "s3cr3t-value") {
		t.Errorf("the log carries a value of the pod: %q", logged)
	}

	// A review that did not come from the API server may name a namespace and UID of a megabyte
	// each: the line stays small.
	logged = nil
	forged := request(admissionv1.Create, []byte(pod))
	forged.Namespace, forged.UID = strings.Repeat("n", 1<<20), types.UID(strings.Repeat("u", 1<<20))
	m.Handle(ctx, forged)
	if len(logged) != 1 || len(logged[0]) > 4*maxLogged+2*maxNote {
		t.Errorf("a forged review's error line is %d bytes: want its request-given strings cut", len(strings.Join(logged, "")))
	}
}
