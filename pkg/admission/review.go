package admission

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"sync"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/go-logr/logr"
	"golang.org/x/sync/semaphore"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// maxReviewSize is controller-runtime's limit on an AdmissionReview body (7 MiB: two objects of
// at most 3 MiB each and the rest of the request). Larger bodies go to its handler, which
// answers 413.
const maxReviewSize = 7 << 20

// pooledBufferSize: bodies read into larger buffers are not kept for reuse, so one huge pod does
// not pin its buffer for the life of the process.
const pooledBufferSize = 64 << 10

// buffers are kept for reuse between requests: a review's body, its answer, and the decode
// option that reads the review's objects in place in that body.
type buffers struct {
	body, answer bytes.Buffer
	inPlace      jsonv2.Options
}

var buffersPool = sync.Pool{New: func() any {
	b := &buffers{}
	b.inPlace = objectsInPlace(b.body.Bytes)
	return b
}}

// largeReviewBytes bounds the bodies over pooledBufferSize handled at once; a body of unknown
// length counts as the largest.
const largeReviewBytes = 4 << 20

var largeReviews = semaphore.NewWeighted(largeReviewBytes)

func reviewWeight(contentLength int64) int64 {
	switch {
	case contentLength < 0, contentLength > largeReviewBytes:
		return largeReviewBytes
	case contentLength <= pooledBufferSize:
		return 0
	}
	return contentLength
}

var v1Review = metav1.TypeMeta{APIVersion: admissionv1.SchemeGroupVersion.String(), Kind: "AdmissionReview"}

// reviewHandler serves one controller-runtime admission webhook, decoding each review once.
//
// controller-runtime's handler decodes a review twice through the runtime codec (once to read
// its apiVersion and kind, once into the request): 22% of a flow-run admission, more than the
// load harness's floor spends on its whole decode. The API server sends JSON
// admission.k8s.io/v1 reviews (flowauth's configurations accept only v1), and those take a
// direct path: one case-sensitive pass of encoding/json/v2 (as the codec's decoder, it matches
// names exactly), then the same Webhook.Handle (panic recovery, UID and status filled in) and
// the same encoding of the answer. Anything else (an empty or oversized body, another content
// type, a v1beta1 or versionless review, a review without a request, a body v2 refuses) is
// handed to controller-runtime's handler with the body as it was sent, so its answer is
// controller-runtime's, word for word. TestReviewHandlerAnswersAsControllerRuntime holds the
// two paths to byte-identical answers.
type reviewHandler struct {
	webhook *webhook.Admission
}

// newReviewHandler serves h with a logger of that name. The LogConstructor skips
// controller-runtime's per-request WithValues, which zap encodes eagerly on every request: the
// handlers add the request's namespace, object and UID themselves when they log.
func newReviewHandler(name string, h admission.Handler) http.Handler {
	return reviewHandler{webhook: &webhook.Admission{
		Handler:        h,
		LogConstructor: func(base logr.Logger, _ *admission.Request) logr.Logger { return base.WithName(name) },
	}}
}

func (h reviewHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Body == nil || r.Body == http.NoBody || r.Header.Get("Content-Type") != "application/json" {
		h.webhook.ServeHTTP(w, r)
		return
	}
	// Large reviews are read and handled a few at a time: what one costs grows with its body
	// (the body, the decoded pod), and a handful of 3 MiB reviews at once would otherwise take
	// the webhook past its memory limit. Small ones, every real flow run, never wait.
	if size := reviewWeight(r.ContentLength); size > 0 {
		if err := largeReviews.Acquire(r.Context(), size); err != nil {
			http.Error(w, "flowauth: too many large admission reviews at once", http.StatusServiceUnavailable)
			return
		}
		defer largeReviews.Release(size)
	}
	b := buffersPool.Get().(*buffers)
	defer func() {
		if b.body.Cap() <= pooledBufferSize && b.answer.Cap() <= pooledBufferSize {
			b.body.Reset()
			b.answer.Reset()
			buffersPool.Put(b)
		}
	}()
	buf := &b.body
	if r.ContentLength > 0 && r.ContentLength < maxReviewSize {
		buf.Grow(int(r.ContentLength) + bytes.MinRead)
	}
	_, err := buf.ReadFrom(io.LimitReader(r.Body, maxReviewSize))
	if err != nil || buf.Len() >= maxReviewSize {
		h.fallback(w, r, buf.Bytes(), err)
		return
	}
	var review admissionv1.AdmissionReview
	if jsonv2.Unmarshal(buf.Bytes(), &review, b.inPlace) != nil || review.TypeMeta != v1Review || review.Request == nil {
		h.fallback(w, r, buf.Bytes(), nil)
		return
	}
	ctx := r.Context()
	if h.webhook.WithContextFunc != nil {
		ctx = h.webhook.WithContextFunc(ctx, r)
	}
	resp := h.webhook.Handle(ctx, admission.Request{AdmissionRequest: *review.Request})

	// The answer is encoded whole before it is written, so it goes out with a Content-Length in
	// one write: streamed, an answer over 2 KiB (any with a patch) would be sent chunked.
	answer := &b.answer
	if err := json.NewEncoder(answer).Encode(admissionv1.AdmissionReview{TypeMeta: v1Review, Response: &resp.AdmissionResponse}); err != nil {
		// Plain data always encodes; should it ever fail, the API server still gets a review.
		logf.FromContext(ctx).Error(err, "unable to encode the admission response", "uid", logged(string(review.Request.UID)))
		failed := admission.Errored(http.StatusInternalServerError, err)
		failed.UID = review.Request.UID
		answer.Reset()
		_ = json.NewEncoder(answer).Encode(admissionv1.AdmissionReview{TypeMeta: v1Review, Response: &failed.AdmissionResponse})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(answer.Len()))
	if _, err := w.Write(answer.Bytes()); err != nil {
		logf.FromContext(ctx).Error(err, "unable to write the admission response", "uid", logged(string(review.Request.UID)))
	}
}

// fallback replays the body read so far, then the rest of the request (or the read error), to
// controller-runtime's handler.
func (h reviewHandler) fallback(w http.ResponseWriter, r *http.Request, read []byte, readErr error) {
	rest := r.Body
	if readErr != nil {
		rest = io.NopCloser(errReader{readErr})
	}
	replay := r.Clone(r.Context())
	replay.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(read), rest), r.Body}
	h.webhook.ServeHTTP(w, replay)
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// objectsInPlace decodes the review's objects (runtime.RawExtension) as slices of the body
// that bodyOf returns rather than as copies, which RawExtension.UnmarshalJSON makes: the body is
// kept until the answer is written, and nothing holds the request after that. A value that is not
// the body's own bytes (a decoder that buffers) is copied. As with UnmarshalJSON, null leaves the
// object empty. Built once per pooled buffer: building the option costs more than the copy.
func objectsInPlace(bodyOf func() []byte) jsonv2.Options {
	return jsonv2.WithUnmarshalers(jsonv2.UnmarshalFromFunc(func(dec *jsontext.Decoder, object *runtime.RawExtension) error {
		value, err := dec.ReadValue()
		if err != nil || value.Kind() == 'n' {
			return err
		}
		body, end := bodyOf(), int(dec.InputOffset())
		if start := end - len(value); start >= 0 && end <= len(body) && &body[start] == &value[0] {
			object.Raw = body[start:end:end]
		} else {
			object.Raw = bytes.Clone(value)
		}
		return nil
	}))
}
