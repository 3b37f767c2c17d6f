package admission

import (
	"encoding/json"
	"net/http"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
)

// floorHandler is the handler of ../shared/bench/admload/cmd/floor, the load harness's floor:
// decode the review and the pod with the same Kubernetes types, answer allowed with an empty
// patch. BenchmarkFloor runs it on the same bodies as BenchmarkServe, so `make bench` shows
// flowauth's cost as a ratio to the least any correct webhook pays, without TLS.
func floorHandler() http.Handler {
	jsonPatch := admissionv1.PatchTypeJSONPatch
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var rev admissionv1.AdmissionReview
		if err := json.NewDecoder(r.Body).Decode(&rev); err != nil || rev.Request == nil {
			http.Error(w, "bad AdmissionReview", http.StatusBadRequest)
			return
		}
		var pod corev1.Pod
		if err := json.Unmarshal(rev.Request.Object.Raw, &pod); err != nil {
			http.Error(w, "bad pod", http.StatusBadRequest)
			return
		}
		rev.Response = &admissionv1.AdmissionResponse{UID: rev.Request.UID, Allowed: true, PatchType: &jsonPatch, Patch: []byte("[]")}
		rev.Request = nil
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(&rev)
	})
}

func BenchmarkFloor(b *testing.B) { benchmarkProfiles(b, floorHandler) }
