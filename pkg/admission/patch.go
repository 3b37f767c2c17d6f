package admission

import (
	"encoding/json"

	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
)

// jsonPatch diffs the decoded pod against the mutated copy. Both sides go through the same Go
// types, so fields this binary does not know (an API server newer than its client libraries) are
// absent from both and never show up as a "remove": the patch only carries flowauth's additions.
func jsonPatch(original, mutated *corev1.Pod) ([]jsonpatch.Operation, error) {
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
