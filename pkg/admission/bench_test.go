package admission

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
)

// The handlers log through controller-runtime's global logger; without one set it prints a
// warning (with a stack) into the middle of the benchmark output, which benchstat then misreads.
func init() { logf.SetLogger(logr.Discard()) }

// The bodies in testdata/admload/ are `admload -dump -profile <name>` from ../shared/bench: the
// same requests the load harness sends, so benchmark and load figures describe the same work.
var profiles = []string{"plain", "small", "flowrun", "large"}

func readProfile(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile("testdata/admload/" + name + ".json")
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// serve sends one AdmissionReview through controller-runtime's webhook HTTP handler, as the
// server does after TLS: read and decode the review, Handle, encode the answer.
func serve(h http.Handler, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequestWithContext(context.Background(), http.MethodPost, PodPath, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// TestHarnessProfilesAreAnswered checks what the benchmarks measure: every profile is answered,
// allowed, and patched exactly when it is a flow run.
func TestHarnessProfilesAreAnswered(t *testing.T) {
	h := NewPodWebhook(newMutator(""))
	for _, p := range profiles {
		rec := serve(h, readProfile(t, p))
		var rev admissionv1.AdmissionReview
		if err := json.Unmarshal(rec.Body.Bytes(), &rev); err != nil || rev.Response == nil {
			t.Fatalf("%s: not an AdmissionReview: %v %s", p, err, rec.Body)
		}
		if !rev.Response.Allowed || string(rev.Response.UID) != "00000000-0000-4000-8000-000000000000" {
			t.Errorf("%s: allowed=%v uid=%s", p, rev.Response.Allowed, rev.Response.UID)
		}
		if patched := len(rev.Response.Patch) > 2; patched != (p != "plain") {
			t.Errorf("%s: patched=%v", p, patched)
		}
	}
}

// BenchmarkServe is the hot path per profile: decode → mutate → patch → encode.
func BenchmarkServe(b *testing.B) {
	benchmarkProfiles(b, func() http.Handler { return NewPodWebhook(newMutator("")) })
}

// benchmarkProfiles serves every harness profile's body with a fresh handler per profile.
func benchmarkProfiles(b *testing.B, handler func() http.Handler) {
	for _, p := range profiles {
		body := readProfile(b, p)
		h := handler()
		b.Run(p, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if rec := serve(h, body); rec.Code != http.StatusOK {
					b.Fatal(rec.Code)
				}
			}
		})
	}
}
