package admission

import (
	"bytes"
	"encoding/json"
	"testing"
	corev1 "k8s.io/api/core/v1"
	"github.com/flowauth/flowauth/pkg/mutate"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	jsonv1 "github.com/go-json-experiment/json/v1"
	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

func encInputs(b *testing.B) ([]any, admissionv1.AdmissionReview) {
	body := readProfile(b, "flowrun")
	var review admissionv1.AdmissionReview
	jsonv2.Unmarshal(body, &review)
	m := newMutator("")
	pod, _ := decodePod(review.Request.Object.Raw)
	res := m.input(pod, "flows", "", m.Secrets.Map())
	_ = res
	return nil, review
}

func BenchmarkEnc(b *testing.B) {
	body := readProfile(b, "flowrun")
	var review admissionv1.AdmissionReview
	jsonv2.Unmarshal(body, &review)
	h := newMutator("")
	resp := h.Handle(b.Context(), admission.Request{AdmissionRequest: *review.Request})
	pod, _ := decodePod(review.Request.Object.Raw)
	_ = pod
	out := admissionv1.AdmissionReview{TypeMeta: v1Review, Response: &resp.AdmissionResponse}
	var v1out bytes.Buffer
	json.NewEncoder(&v1out).Encode(out)
	opts := jsonv2.JoinOptions(jsonv1.DefaultOptionsV1())
	opts2 := jsonv2.JoinOptions(jsonv1.OmitEmptyWithLegacySemantics(true), jsontext.EscapeForHTML(true), jsonv2.Deterministic(true))
	bb, _ := jsonv2.Marshal(out, opts)
	bb2, _ := jsonv2.Marshal(out, opts2)
	if !bytes.Equal(bytes.TrimSpace(v1out.Bytes()), bb) {
		b.Fatalf("differ\n%s\n%s", v1out.Bytes(), bb)
	}
	if !bytes.Equal(bytes.TrimSpace(v1out.Bytes()), bb2) {
		b.Logf("differ2\n%s\n%s", v1out.Bytes(), bb2)
	}
	b.Run("answer-v1", func(b *testing.B) {
		for b.Loop() {
			var w bytes.Buffer
			json.NewEncoder(&w).Encode(out)
		}
	})
	b.Run("answer-v2v1", func(b *testing.B) {
		for b.Loop() {
			jsonv2.Marshal(out, opts)
		}
	})
	b.Run("answer-v2sel", func(b *testing.B) {
		for b.Loop() {
			jsonv2.Marshal(out, opts2)
		}
	})
}

func BenchmarkPatchEnc(b *testing.B) {
	body := readProfile(b, "flowrun")
	var review admissionv1.AdmissionReview
	jsonv2.Unmarshal(body, &review)
	h := newMutator("")
	pod, _ := decodePod(review.Request.Object.Raw)
	res := mutatePod(h, pod)
	ops, _ := jsonPatch(pod, res)
	type operation struct {
		Op    string `json:"op"`
		Path  string `json:"path"`
		Value any    `json:"value,omitempty"`
	}
	plain := make([]operation, len(ops))
	for i, o := range ops {
		plain[i] = operation{Op: o.Operation, Path: o.Path, Value: o.Value}
	}
	opts := jsonv2.JoinOptions(jsonv1.DefaultOptionsV1())
	opts2 := jsonv2.JoinOptions(jsonv1.OmitEmptyWithLegacySemantics(true), jsontext.EscapeForHTML(true), jsonv2.Deterministic(true))
	a, _ := json.Marshal(plain)
	c, _ := jsonv2.Marshal(plain, opts2)
	if !bytes.Equal(a, c) {
		b.Logf("differ\n%s\n%s", a, c)
	}
	b.Run("v1", func(b *testing.B) { for b.Loop() { json.Marshal(plain) } })
	b.Run("v2v1", func(b *testing.B) { for b.Loop() { jsonv2.Marshal(plain, opts) } })
	b.Run("v2sel", func(b *testing.B) { for b.Loop() { jsonv2.Marshal(plain, opts2) } })
	b.Run("v2plain", func(b *testing.B) { for b.Loop() { jsonv2.Marshal(plain) } })
}

func mutatePod(h *PodMutator, pod *corev1.Pod) *corev1.Pod {
	return mutate.Pod(h.input(pod, "flows", "", h.Secrets.Map())).Pod
}

type slimRequest struct {
	UID         string                 `json:"uid"`
	Kind        struct{ Group, Version, Kind string } `json:"kind"`
	SubResource string                 `json:"subResource"`
	Namespace   string                 `json:"namespace"`
	Operation   string                 `json:"operation"`
	Object      jsontext.Value         `json:"object"`
	DryRun      *bool                  `json:"dryRun"`
}
type slimReview struct {
	APIVersion string       `json:"apiVersion"`
	Kind       string       `json:"kind"`
	Request    *slimRequest `json:"request"`
}

func BenchmarkParts(b *testing.B) {
	for _, p := range []string{"plain", "flowrun"} {
		body := readProfile(b, p)
		bf := buffersPool.Get().(*buffers)
		bf.body.Write(body)
		var review admissionv1.AdmissionReview
		b.Run(p+"/review-full", func(b *testing.B) {
			for b.Loop() {
				review = admissionv1.AdmissionReview{}
				jsonv2.Unmarshal(bf.body.Bytes(), &review, bf.inPlace)
			}
		})
		b.Run(p+"/review-slim", func(b *testing.B) {
			for b.Loop() {
				var r slimReview
				jsonv2.Unmarshal(bf.body.Bytes(), &r)
			}
		})
		b.Run(p+"/validate-only", func(b *testing.B) {
			for b.Loop() {
				jsontext.Value(bf.body.Bytes()).IsValid()
			}
		})
		b.Run(p+"/decodePod", func(b *testing.B) {
			for b.Loop() {
				decodePod(review.Request.Object.Raw)
			}
		})
		h := newMutator("")
		pod, _ := decodePod(review.Request.Object.Raw)
		b.Run(p+"/mutate", func(b *testing.B) {
			for b.Loop() {
				mutatePod(h, pod)
			}
		})
		b.Run(p+"/handle", func(b *testing.B) {
			for b.Loop() {
				h.Handle(b.Context(), admission.Request{AdmissionRequest: *review.Request})
			}
		})
	}
}
