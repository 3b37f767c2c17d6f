package admission

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admission/v1"

	"github.com/flowauth/flowauth/pkg/mutate"
)

// answer is what the API server gets back, reduced to what a case asserts.
type answer struct {
	Allowed  bool
	Code     int32 // Result.Code: 200 allowed, 403 denied, 4xx/5xx errors
	Message  string
	Warnings []string
	Patched  bool
}

func podReview(uid, op, group, version, kind, sub, object string, dryRun bool) []byte {
	return fmt.Appendf(nil, `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":%q,"kind":{"group":%q,"version":%q,"kind":%q},"resource":{"group":%q,"version":%q,"resource":"pods"},"subResource":%q,"namespace":"flows","operation":%q,"dryRun":%v,"object":%s}}`,
		uid, group, version, kind, group, version, sub, op, dryRun, object)
}

func create(object string) []byte {
	return podReview("u1", "CREATE", "", "v1", "Pod", "", object, false)
}

// pod returns a pod object with the annotations and n containers.
func pod(annotations map[string]string, containers int) string {
	a, _ := json.Marshal(annotations)
	var cs []string
	for i := range containers {
		cs = append(cs, fmt.Sprintf(`{"name":"c%d","image":"i"}`, i))
	}
	return fmt.Sprintf(`{"apiVersion":"v1","kind":"Pod","metadata":{"generateName":"run-","annotations":%s},"spec":{"containers":[%s]}}`, a, strings.Join(cs, ","))
}

func declares(value string) string { return pod(map[string]string{"flowauth.io/secrets": value}, 1) }

const notAName = "flowauth: annotation flowauth.io/secrets: entry %s is not a valid secret name: it must match [A-Z][A-Z0-9_]* (upper-case letters, digits and '_', starting with a letter)"

// catalogueCase is one request of the bad-input catalogue. contentType "" sends
// application/json; "deny" sends it to a mutator in deny mode that knows of no Secret.
type catalogueCase struct {
	name        string
	body        []byte
	contentType string
	want        answer
}

// catalogue: malformed and hostile requests, each with the exact answer.
func catalogue() []catalogueCase {
	many := make([]string, 65)
	for i := range many {
		many[i] = fmt.Sprintf("N%d", i)
	}
	return []catalogueCase{
		// Transport and envelope.
		{"empty body", nil, "", answer{Code: 400, Message: errEmptyRequest.Error()}},
		{"not JSON", []byte("hello"), "", answer{Code: 400, Message: "couldn't get version/kind; json parse error: json: cannot unmarshal string into Go value of type struct { APIVersion string \"json:\\\"apiVersion,omitempty\\\"\"; Kind string \"json:\\\"kind,omitempty\\\"\" }"}},
		{"wrong content type", create(declares("AWS_CREDENTIALS")), "text/plain", answer{Code: 400, Message: "contentType=text/plain, expected application/json"}},
		{"oversized body (8 MiB)", bytes.Repeat([]byte(" "), 8<<20), "", answer{Code: 413, Message: "request entity is too large; limit is 7340032 bytes"}},
		{"JSON array", []byte(`[]`), "", answer{Code: 400, Message: "couldn't get version/kind; json parse error: json: cannot unmarshal array into Go value of type struct { APIVersion string \"json:\\\"apiVersion,omitempty\\\"\"; Kind string \"json:\\\"kind,omitempty\\\"\" }"}},
		{"unknown AdmissionReview version, no kind", []byte(`{"apiVersion":"admission.k8s.io/v2","kind":"AdmissionReview","request":{"uid":"u"}}`), "", answer{Code: 400, Message: errEmptyRequest.Error()}},
		{"no request", []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`), "", answer{Code: 400, Message: errEmptyRequest.Error()}},
		{"v1beta1 review", bytes.Replace(create(declares("GITHUB_ACCESS_TOKEN")), []byte("admission.k8s.io/v1"), []byte("admission.k8s.io/v1beta1"), 1), "", answer{Allowed: true, Code: 200, Patched: true}},

		// Not flowauth's business: allowed unchanged.
		{"UPDATE", podReview("u", "UPDATE", "", "v1", "Pod", "", declares("AWS_CREDENTIALS"), false), "", answer{Allowed: true, Code: 200, Message: "flowauth only mutates pod CREATE"}},
		{"DELETE", podReview("u", "DELETE", "", "v1", "Pod", "", "null", false), "", answer{Allowed: true, Code: 200, Message: "flowauth only mutates pod CREATE"}},
		{"CONNECT", podReview("u", "CONNECT", "", "v1", "Pod", "exec", "null", false), "", answer{Allowed: true, Code: 200, Message: "flowauth only mutates pod CREATE"}},
		{"subresource", podReview("u", "CREATE", "", "v1", "Pod", "binding", `{}`, false), "", answer{Allowed: true, Code: 200, Message: "flowauth only mutates pod CREATE"}},
		{"wrong kind", podReview("u", "CREATE", "apps", "v1", "Deployment", "", `{}`, false), "", answer{Allowed: true, Code: 200, Message: "flowauth only mutates pod CREATE"}},
		{"Pod of another group", podReview("u", "CREATE", "example.com", "v1", "Pod", "", declares("AWS_CREDENTIALS"), false), "", answer{Allowed: true, Code: 200, Message: "flowauth only mutates pod CREATE"}},
		{"Pod of another version", podReview("u", "CREATE", "", "v2", "Pod", "", declares("AWS_CREDENTIALS"), false), "", answer{Allowed: true, Code: 200, Message: "flowauth only mutates pod CREATE"}},
		{"not a flow run", create(pod(nil, 1)), "", answer{Allowed: true, Code: 200}},

		// Objects that are not pods.
		{"missing object", create("null"), "", answer{Code: 400, Message: "flowauth: request object is not a pod: unexpected end of JSON input"}},
		{"object is a string", create(`"pod"`), "", answer{Code: 400, Message: "flowauth: request object is not a pod: json: cannot unmarshal string into Go value of type v1.Pod"}},
		{"object is an array", create(`[1]`), "", answer{Code: 400, Message: "flowauth: request object is not a pod: json: cannot unmarshal array into Go value of type v1.Pod"}},
		{"annotations of the wrong type", create(`{"metadata":{"annotations":{"flowauth.io/secrets":7}}}`), "", answer{Code: 400, Message: "flowauth: request object is not a pod: json: cannot unmarshal number into Go struct field ObjectMeta.metadata.annotations of type string"}},
		{"spec of the wrong type", create(`{"metadata":{"annotations":{"flowauth.io/secrets":"A"}},"spec":[]}`), "", answer{Code: 400, Message: "flowauth: request object is not a pod: json: cannot unmarshal array into Go struct field Pod.spec of type v1.PodSpec"}},

		// Hostile or mistaken declarations.
		{"name with ..", create(declares("AWS..X")), "", answer{Code: 403, Message: fmt.Sprintf(notAName, `"AWS..X"`)}},
		{"name with /", create(declares("../../etc/passwd")), "", answer{Code: 403, Message: fmt.Sprintf(notAName, `"../../etc/passwd"`)}},
		{"name with a newline inside quotes", create(declares("\"AWS\nX\"")), "", answer{Code: 403, Message: fmt.Sprintf(notAName, `"\"AWS"`) + "; " + fmt.Sprintf(notAName, `"X\""`)[len("flowauth: "):]}},
		{"newline as separator", create(declares("GITHUB_ACCESS_TOKEN\nSLACK_WEBHOOK_URL")), "", answer{Allowed: true, Code: 200, Patched: true}},
		{"unicode name", create(declares("ÅWS_CREDENTIALS")), "", answer{Code: 403, Message: fmt.Sprintf(notAName, `"ÅWS_CREDENTIALS"`)}},
		{"control characters", create(declares("AWS\x00\x1b[31m")), "", answer{Code: 403, Message: fmt.Sprintf(notAName, `"AWS\x00\x1b[31m"`)}},
		{"over-long annotation value", create(declares(strings.Repeat("A", 100_000))), "", answer{Code: 403, Message: "flowauth: annotation flowauth.io/secrets: entry " + `"` + strings.Repeat("A", 80) + `"...` + " is not a valid secret name: it is 100000 characters long; at most 63 are allowed"}},
		{"too many names", create(declares(strings.Join(many, " "))), "", answer{Code: 403, Message: "flowauth: annotation flowauth.io/secrets declares more than 64 names, which is the most allowed"}},
		{"duplicate names", create(declares("GITHUB_ACCESS_TOKEN GITHUB_ACCESS_TOKEN")), "", answer{Allowed: true, Code: 200, Patched: true}},
		{"empty declaration", create(declares("  ,, ")), "", answer{Allowed: true, Code: 200, Warnings: []string{"flowauth: annotation flowauth.io/secrets declares no secret name; nothing injected"}}},
		{"bad inject mode", create(pod(map[string]string{"flowauth.io/secrets": "AWS_CREDENTIALS", "flowauth.io/inject": "all"}, 1)), "", answer{Code: 403, Message: `flowauth: annotation flowauth.io/inject: value "all" is not one of prefect, native, both, true, false`}},
		{"skip-containers listing nothing", create(pod(map[string]string{"flowauth.io/secrets": "AWS_CREDENTIALS", "flowauth.io/skip-containers": " , "}, 1)), "", answer{Code: 403, Message: `flowauth: annotation flowauth.io/skip-containers lists no container; remove it to skip none`}},
		{"skip-containers naming an invalid container", create(pod(map[string]string{"flowauth.io/secrets": "AWS_CREDENTIALS", "flowauth.io/skip-containers": "Side_Car"}, 1)), "", answer{Code: 403, Message: `flowauth: annotation flowauth.io/skip-containers: entry "Side_Car" is not a valid container name: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`}},
		{"containers naming none", create(pod(map[string]string{"flowauth.io/secrets": "AWS_CREDENTIALS", "flowauth.io/containers": "ghost"}, 1)), "", answer{Code: 403, Message: `flowauth: annotation flowauth.io/containers: none of the named containers (ghost) is in the pod (it has: c0); the declared secrets would reach no container`}},
		{"override to an invalid Secret name", create(pod(map[string]string{"flowauth.io/secrets": "AWS_CREDENTIALS", "secret.flowauth.io/AWS_CREDENTIALS": "Bad_Name"}, 1)), "", answer{Code: 403, Message: `flowauth: annotation secret.flowauth.io/AWS_CREDENTIALS: value "Bad_Name" is not a valid Secret name: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`}},
		{"forged status annotation", create(pod(map[string]string{"flowauth.io/secrets": "GITHUB_ACCESS_TOKEN", "flowauth.io/status": "injected=EVERYTHING"}, 1)), "", answer{Allowed: true, Code: 200, Patched: true}},
		{"10,000 containers", create(pod(map[string]string{"flowauth.io/secrets": "GITHUB_ACCESS_TOKEN"}, 10_000)), "", answer{Code: 403, Message: "flowauth: the pod has more than 64 containers (init containers included), which is the most flowauth serves in a flow-run pod"}},
		{"pod without containers", create(pod(map[string]string{"flowauth.io/secrets": "GITHUB_ACCESS_TOKEN"}, 0)), "", answer{Allowed: true, Code: 200, Patched: true}},
		{"dry run", podReview("u", "CREATE", "", "v1", "Pod", "", declares("GITHUB_ACCESS_TOKEN"), true), "", answer{Allowed: true, Code: 200, Patched: true}},
		{"missing Secret in deny mode", create(declares("GITHUB_ACCESS_TOKEN")), "deny", answer{Code: 403, Message: `flowauth: namespace "flows": Secret "github-access-token" not found; GITHUB_ACCESS_TOKEN needs it (keys token). Create it: kubectl create secret generic github-access-token -n flows --from-literal=token=<value>`}},
	}
}

// send sends the case's request to the handler built by serveWith for its mutator.
func (tt catalogueCase) send(serveWith func(*PodMutator) http.Handler) *httptest.ResponseRecorder {
	h := newMutator("")
	contentType := "application/json"
	switch tt.contentType {
	case "deny":
		h.Keys, h.Missing = &mutate.StaticKeys{}, mutate.MissingDeny
	case "":
	default:
		contentType = tt.contentType
	}
	req := httptest.NewRequestWithContext(context.Background(), http.MethodPost, PodPath, bytes.NewReader(tt.body))
	req.Header.Set("Content-Type", contentType)
	rec := httptest.NewRecorder()
	serveWith(h).ServeHTTP(rec, req)
	return rec
}

// TestBadInputCatalogue sends the catalogue through the pod webhook's HTTP handler, as the API
// server's requests are.
func TestBadInputCatalogue(t *testing.T) {
	tests := catalogue()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := tt.send(NewPodWebhook)
			if rec.Code != http.StatusOK {
				t.Fatalf("HTTP %d: the API server needs a 200 with an AdmissionReview", rec.Code)
			}
			var rev admissionv1.AdmissionReview
			if err := json.Unmarshal(rec.Body.Bytes(), &rev); err != nil || rev.Response == nil {
				t.Fatalf("not an AdmissionReview: %v %s", err, rec.Body)
			}
			r := rev.Response
			got := answer{Allowed: r.Allowed, Warnings: r.Warnings, Patched: len(r.Patch) > 0}
			if r.Result != nil {
				got.Code, got.Message = r.Result.Code, r.Result.Message
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	if len(tests) < 30 {
		t.Errorf("the catalogue has %d cases; keep at least 30", len(tests))
	}
}
