package admission

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"

	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"

	"github.com/flowauth/flowauth/pkg/mutate"
)

// jsonPatch returns the operations that turn the decoded pod into the mutated one.
//
// mutate.Pod only appends env vars, mounts and volumes and sets its own annotations, so the
// patch is a list of "add" operations read off the Go values: no JSON round trip, which was 45% of
// a flow-run request's CPU when the whole pod was diffed (see docs/contributing/performance.md). When the
// mutated pod is not such an append (a future change to mutate), the general diff is used.
// TestFastPatchMatchesGeneralDiff checks both agree on every golden case.
//
// Either way only flowauth's additions are in the patch: fields this binary does not know (an API
// server newer than its client libraries) are never touched.
func jsonPatch(original, mutated *corev1.Pod) ([]jsonpatch.Operation, error) {
	if ops, ok := appendOnlyPatch(original, mutated); ok {
		return ops, nil
	}
	return diffPatch(original, mutated)
}

// encodePatch writes the operations as a JSON Patch document.
func encodePatch(ops []jsonpatch.Operation) ([]byte, error) {
	type operation struct {
		Op    string `json:"op"`
		Path  string `json:"path"`
		Value any    `json:"value,omitempty"`
	}
	plain := make([]operation, len(ops))
	for i, o := range ops {
		if o.Value == nil && (o.Operation == "add" || o.Operation == "replace") {
			return json.Marshal(ops) // "value": null must be written: the library's encoder does it
		}
		plain[i] = operation{Op: o.Operation, Path: o.Path, Value: o.Value}
	}
	return json.Marshal(plain)
}

// diffPatch diffs the two pods' JSON. Both sides go through the same Go types, so unknown fields
// are absent from both and never show up as a "remove".
func diffPatch(original, mutated *corev1.Pod) ([]jsonpatch.Operation, error) {
	before, err := json.Marshal(original)
	if err != nil {
		return nil, err
	}
	after, err := json.Marshal(mutated)
	if err != nil {
		return nil, err
	}
	return jsonpatch.CreatePatch(before, after)
}

func appendOnlyPatch(original, mutated *corev1.Pod) ([]jsonpatch.Operation, bool) {
	o, m := &original.Spec, &mutated.Spec
	if len(o.Containers) != len(m.Containers) || len(o.InitContainers) != len(m.InitContainers) ||
		!sameAnnotationsBut(original.Annotations, mutated.Annotations, ownAnnotations) {
		return nil, false
	}
	ops := make([]jsonpatch.Operation, 0, 16)
	var ok bool
	for i := range m.InitContainers {
		if ops, ok = containerOps(ops, "/spec/initContainers/"+strconv.Itoa(i), &o.InitContainers[i], &m.InitContainers[i]); !ok {
			return nil, false
		}
	}
	for i := range m.Containers {
		if ops, ok = containerOps(ops, "/spec/containers/"+strconv.Itoa(i), &o.Containers[i], &m.Containers[i]); !ok {
			return nil, false
		}
	}
	if ops, ok = appendOps(ops, "/spec/volumes", o.Volumes, m.Volumes); !ok {
		return nil, false
	}
	if len(original.Annotations) == 0 {
		if added := ownAnnotationsOf(mutated.Annotations); len(added) > 0 {
			ops = append(ops, jsonpatch.NewOperation("add", "/metadata/annotations", added))
		}
		return ops, true
	}
	for i, key := range ownAnnotations {
		if value, set := mutated.Annotations[key]; set && original.Annotations[key] != value {
			// "add" on an existing member replaces it.
			ops = append(ops, jsonpatch.NewOperation("add", ownAnnotationPaths[i], value))
		}
	}
	return ops, true
}

func containerOps(ops []jsonpatch.Operation, path string, o, m *corev1.Container) ([]jsonpatch.Operation, bool) {
	ops, ok := appendOps(ops, path+"/env", o.Env, m.Env)
	if !ok {
		return nil, false
	}
	return appendOps(ops, path+"/volumeMounts", o.VolumeMounts, m.VolumeMounts)
}

// appendOps adds the items of after beyond before, which must be its prefix (checked by length
// here; by content in the tests, since mutate never rewrites an item).
func appendOps[T any](ops []jsonpatch.Operation, path string, before, after []T) ([]jsonpatch.Operation, bool) {
	switch {
	case len(after) < len(before):
		return nil, false
	case len(after) == len(before):
		return ops, true
	case len(before) == 0:
		// The list may be absent, null or empty in the request: "add" of the whole list covers all three.
		return append(ops, jsonpatch.NewOperation("add", path, after)), true
	}
	for i := len(before); i < len(after); i++ {
		// A pointer encodes as the item does, without copying it into an interface.
		ops = append(ops, jsonpatch.NewOperation("add", path+"/-", &after[i]))
	}
	return ops, true
}

// ownAnnotations are the annotations mutate.Pod writes.
var ownAnnotations = []string{mutate.AnnotationStatus, mutate.AnnotationOriginalContainers}

// ownAnnotationPaths point at them; "/" in a key is escaped as "~1" (RFC 6901).
var ownAnnotationPaths = func() []string {
	escape := strings.NewReplacer("~", "~0", "/", "~1")
	paths := make([]string, len(ownAnnotations))
	for i, key := range ownAnnotations {
		paths[i] = "/metadata/annotations/" + escape.Replace(key)
	}
	return paths
}()

func ownAnnotationsOf(annotations map[string]string) map[string]string {
	out := map[string]string{}
	for _, key := range ownAnnotations {
		if v, ok := annotations[key]; ok {
			out[key] = v
		}
	}
	return out
}

// sameAnnotationsBut reports whether a and b hold the same annotations, except keys.
func sameAnnotationsBut(a, b map[string]string, except []string) bool {
	n := 0
	for k, v := range b {
		if slices.Contains(except, k) {
			continue
		}
		if a[k] != v {
			return false
		}
		n++
	}
	for _, k := range except {
		if _, ok := a[k]; ok {
			n++
		}
	}
	return len(a) == n
}
