package admission

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// controllerRuntime serves a mutator with controller-runtime's own handler only.
func controllerRuntime(h *PodMutator) http.Handler {
	return &webhook.Admission{Handler: h, LogConstructor: func(base logr.Logger, _ *admission.Request) logr.Logger { return base }}
}

// TestReviewHandlerAnswersAsControllerRuntime: the direct decode path must not change a single
// answer. Every catalogue request, every harness profile and the envelope's corner cases get the
// same HTTP status and the same bytes from reviewHandler as from controller-runtime's handler.
func TestReviewHandlerAnswersAsControllerRuntime(t *testing.T) {
	cases := catalogue()
	for _, p := range profiles {
		cases = append(cases, catalogueCase{name: "harness " + p, body: readProfile(t, p)})
	}
	flowRun := create(declares("GITHUB_ACCESS_TOKEN"))
	cases = append(cases,
		catalogueCase{name: "no apiVersion or kind", body: bytes.Replace(flowRun, []byte(`"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview",`), nil, 1)},
		catalogueCase{name: "request: null", body: []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":null}`)},
		catalogueCase{name: "request of the wrong type", body: []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":"pod"}`)},
		catalogueCase{name: "keys in another case", body: bytes.Replace(flowRun, []byte(`"request"`), []byte(`"Request"`), 1)},
		catalogueCase{name: "trailing garbage", body: append(bytes.Clone(flowRun), "}"...)},
		catalogueCase{name: "another kind of review", body: bytes.Replace(flowRun, []byte(`"AdmissionReview"`), []byte(`"TokenReview"`), 1)},
		catalogueCase{name: "body of exactly the limit", body: append(bytes.Clone(flowRun), bytes.Repeat([]byte(" "), maxReviewSize-len(flowRun))...)},
		catalogueCase{name: "body one byte under the limit", body: append(bytes.Clone(flowRun), bytes.Repeat([]byte(" "), maxReviewSize-1-len(flowRun))...)},
	)
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			want, got := tt.send(controllerRuntime), tt.send(NewPodWebhook)
			if want.Code != got.Code || !bytes.Equal(want.Body.Bytes(), got.Body.Bytes()) {
				t.Errorf("controller-runtime: HTTP %d %.300s\nreviewHandler: HTTP %d %.300s", want.Code, want.Body, got.Code, got.Body)
			}
			if len(got.Body.Bytes()) == 0 {
				t.Error("empty answer")
			}
		})
	}
}

// TestReviewHandlerReportsAReadErrorAsControllerRuntime: a body that fails half way is answered
// with controller-runtime's message for that error, after the bytes that did arrive.
func TestReviewHandlerReportsAReadErrorAsControllerRuntime(t *testing.T) {
	broken := func() io.Reader {
		return io.MultiReader(strings.NewReader(`{"apiVersion":"admission.k8s.io/v1"`), errReader{errors.New("connection reset")})
	}
	var answers []string
	for _, h := range []http.Handler{controllerRuntime(newMutator("")), NewPodWebhook(newMutator(""))} {
		req := httptest.NewRequestWithContext(context.Background(), http.MethodPost, PodPath, broken())
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		answers = append(answers, rec.Body.String())
	}
	if answers[0] != answers[1] || !strings.Contains(answers[1], "connection reset") {
		t.Errorf("controller-runtime: %s\nreviewHandler: %s", answers[0], answers[1])
	}
}

// TestReviewHandlerAnswersWithALength: over HTTP, a patched answer (over 2 KiB) arrives labelled
// as JSON and with a Content-Length, not chunked (controller-runtime's handler streams it, and
// net/http chunks whatever passes 2 KiB before the handler returns).
func TestReviewHandlerAnswersWithALength(t *testing.T) {
	srv := httptest.NewServer(NewPodWebhook(newMutator("")))
	defer srv.Close()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, srv.URL+PodPath, bytes.NewReader(readProfile(t, "large")))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if len(body) <= 2048 || !bytes.Contains(body, []byte(`"patch":`)) {
		t.Fatalf("want a patched answer over 2 KiB, got %d bytes", len(body))
	}
	if resp.ContentLength != int64(len(body)) || len(resp.TransferEncoding) > 0 {
		t.Errorf("Content-Length %d, Transfer-Encoding %v for %d bytes", resp.ContentLength, resp.TransferEncoding, len(body))
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
}

// TestObjectsAreDecodedInPlace: the review's object is the body's own bytes, not a copy, and
// capped so that an append cannot write into the rest of the body; null stays empty.
func TestObjectsAreDecodedInPlace(t *testing.T) {
	body := readProfile(t, "flowrun")
	var review admissionv1.AdmissionReview
	if err := jsonv2.Unmarshal(body, &review, objectsInPlace(func() []byte { return body })); err != nil {
		t.Fatal(err)
	}
	raw := review.Request.Object.Raw
	start := bytes.Index(body, []byte(`"object":`)) + len(`"object":`)
	if len(raw) == 0 || &raw[0] != &body[start] || !bytes.Equal(raw, body[start:start+len(raw)]) {
		t.Fatalf("the object is not the body's bytes at offset %d", start)
	}
	if cap(raw) != len(raw) {
		t.Errorf("object capacity %d beyond its length %d", cap(raw), len(raw))
	}
	var pod corev1.Pod
	if err := json.Unmarshal(raw, &pod); err != nil || pod.GenerateName == "" {
		t.Errorf("the object is not the pod: %v", err)
	}
	if review.Request.OldObject.Raw != nil {
		t.Errorf("oldObject null decoded as %q", review.Request.OldObject.Raw)
	}
}

// FuzzReviewHandlerAnswersAsControllerRuntime: for any body, the direct path and
// controller-runtime's handler give the same HTTP status and the same bytes.
func FuzzReviewHandlerAnswersAsControllerRuntime(f *testing.F) {
	for _, tt := range catalogue() {
		if tt.contentType == "" && len(tt.body) < 1<<16 {
			f.Add(tt.body)
		}
	}
	for _, p := range profiles {
		f.Add(readProfile(f, p))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		tt := catalogueCase{body: body}
		want, got := tt.send(controllerRuntime), tt.send(NewPodWebhook)
		if want.Code != got.Code || !bytes.Equal(want.Body.Bytes(), got.Body.Bytes()) {
			t.Fatalf("body %q\ncontroller-runtime: HTTP %d %s\nreviewHandler: HTTP %d %s", body, want.Code, want.Body, got.Code, got.Body)
		}
	})
}
