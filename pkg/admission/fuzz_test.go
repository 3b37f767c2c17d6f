package admission

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/flowauth/flowauth/pkg/mutate"
	"github.com/flowauth/flowauth/pkg/secretmap"
)

// addedPaths are the only places a flowauth patch may touch: it adds env vars, mounts, volumes
// and its own annotations, and never removes or rewrites what the user set.
var addedPaths = regexp.MustCompile(`^(/spec/(initContainers|containers)/\d+/(env|volumeMounts)(/-)?|/spec/volumes(/-)?|/metadata/annotations(/flowauth.io~1(status|original-containers))?)$`)

// FuzzServe sends arbitrary bytes as the body of an admission request through the full
// controller-runtime handler. Seeds: every golden pod of pkg/mutate wrapped in an
// AdmissionReview, and the load harness's bodies. Invariants: no panic; always a well-formed
// AdmissionReview, with the request's UID when the request has one; a patch applies cleanly,
// only adds where flowauth may add, and its result needs no further change.
func FuzzServe(f *testing.F) {
	ins, _ := filepath.Glob("../mutate/testdata/*/in.yaml")
	for _, in := range ins {
		f.Add(review(f, "CREATE", yamlToJSON(f, in)))
	}
	for _, p := range profiles {
		f.Add(readProfile(f, p))
	}
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","object":{"metadata":{"annotations":{"flowauth.io/secrets":"A B"}},"spec":{"containers":[{"name":"a","env":null}]}}}}`))
	f.Add([]byte(`not json`))
	m := secretmap.Builtin()
	keys := &mutate.StaticKeys{Secrets: map[string][]string{"aws-credentials": {"ACCESS_KEY"}}}
	f.Fuzz(func(t *testing.T, body []byte) {
		h := newMutator("AWS_CREDENTIALS")
		h.Keys = keys
		rec := serve(NewPodWebhook(h), body)
		var rev admissionv1.AdmissionReview
		if err := json.Unmarshal(rec.Body.Bytes(), &rev); err != nil || rev.Response == nil {
			t.Fatalf("answer is not an AdmissionReview (HTTP %d): %v %q", rec.Code, err, rec.Body)
		}
		var sent admissionv1.AdmissionReview
		if json.Unmarshal(body, &sent) != nil || sent.Request == nil {
			return // nothing more can be asked of an answer to garbage
		}
		if rev.Response.UID != sent.Request.UID {
			t.Fatalf("answer UID %q, request UID %q", rev.Response.UID, sent.Request.UID)
		}
		if len(rev.Response.Patch) == 0 {
			return
		}
		if !rev.Response.Allowed {
			t.Fatal("a denial carries a patch")
		}
		var ops []struct {
			Op   string `json:"op"`
			Path string `json:"path"`
		}
		if err := json.Unmarshal(rev.Response.Patch, &ops); err != nil {
			t.Fatalf("patch is not JSON Patch: %v", err)
		}
		for _, op := range ops {
			if op.Op != "add" || !addedPaths.MatchString(op.Path) {
				t.Fatalf("patch does %s %s: only adds of env, mounts, volumes and flowauth's own annotations are allowed", op.Op, op.Path)
			}
		}
		patch, err := jsonpatch.DecodePatch(rev.Response.Patch)
		if err != nil {
			t.Fatal(err)
		}
		out, err := patch.Apply(sent.Request.Object.Raw)
		if err != nil {
			t.Fatalf("patch does not apply to the pod sent: %v", err)
		}
		var before, after corev1.Pod
		if json.Unmarshal(sent.Request.Object.Raw, &before) != nil || json.Unmarshal(out, &after) != nil {
			t.Fatalf("patched pod does not decode: %s", out)
		}
		keptAll(t, &before, &after)
		again := mutate.Pod(mutate.Input{Pod: &after, Namespace: sent.Request.Namespace, NamespaceDefaults: "AWS_CREDENTIALS", Map: m, Keys: keys, SkipContainers: h.SkipContainers})
		if again.Changed || again.Denied() {
			t.Fatalf("flowauth's own output is changed again (denied=%v): %v", again.Denied(), again.Denials)
		}
	})
}

// keptAll checks that every env var, mount and volume of the pod sent is still there, unchanged.
func keptAll(t *testing.T, before, after *corev1.Pod) {
	t.Helper()
	same := func(what string, a, b any) {
		if fmt.Sprint(a) != fmt.Sprint(b) {
			t.Fatalf("%s was rewritten:\nbefore %v\nafter  %v", what, a, b)
		}
	}
	for i, c := range before.Spec.Containers {
		same(fmt.Sprintf("container %d env", i), c.Env, after.Spec.Containers[i].Env[:len(c.Env)])
		same(fmt.Sprintf("container %d mounts", i), c.VolumeMounts, after.Spec.Containers[i].VolumeMounts[:len(c.VolumeMounts)])
	}
	same("volumes", before.Spec.Volumes, after.Spec.Volumes[:len(before.Spec.Volumes)])
	for k, v := range before.Annotations {
		if k != mutate.AnnotationStatus && after.Annotations[k] != v {
			t.Fatalf("annotation %s rewritten", k)
		}
	}
}

// review wraps a pod in an AdmissionReview request.
func review(tb testing.TB, op string, pod []byte) []byte {
	tb.Helper()
	b, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: "fuzz-uid", Operation: admissionv1.Operation(op), Namespace: "flows",
			Kind:     metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Object:   runtime.RawExtension{Raw: pod},
		},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return b
}
