package admission

import (
	"encoding/json"
	"strconv"
	"strings"

	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"

	"github.com/flowauth/flowauth/pkg/mutate"
)

// jsonPatch returns the operations that turn the decoded pod into the mutated one.
//
// mutate.Pod only appends env vars, mounts and volumes and sets the status annotation, so the
// patch is a list of "add" operations read off the Go values: no JSON round trip, which was 45% of
// a flow-run request's CPU when the whole pod was diffed (see README, Performance). When the
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
		!sameAnnotationsBut(original.Annotations, mutated.Annotations, mutate.AnnotationStatus) {
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
	if status, set := mutated.Annotations[mutate.AnnotationStatus]; set && original.Annotations[mutate.AnnotationStatus] != status {
		if len(original.Annotations) == 0 {
			ops = append(ops, jsonpatch.NewOperation("add", "/metadata/annotations", map[string]string{mutate.AnnotationStatus: status}))
		} else {
			// "add" on an existing member replaces it.
			ops = append(ops, jsonpatch.NewOperation("add", statusPath, status))
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

func sameAnnotationsBut(a, b map[string]string, except string) bool {
	n := 0
	for k, v := range b {
		if k == except {
			continue
		}
		if a[k] != v {
			return false
		}
		n++
	}
	if _, ok := a[except]; ok {
		return len(a)-1 == n
	}
	return len(a) == n
}

// statusPath points at the status annotation; "/" in the key is escaped as "~1" (RFC 6901).
var statusPath = "/metadata/annotations/" + strings.NewReplacer("~", "~0", "/", "~1").Replace(mutate.AnnotationStatus)
