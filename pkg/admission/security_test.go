package admission

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/flowauth/flowauth/pkg/mutate"
)

// countingKeys is a key cache that counts what it is asked.
type countingKeys struct {
	mutate.StaticKeys
	asked []string
}

func (k *countingKeys) SecretKeys(namespace, name string) ([]string, bool) {
	k.asked = append(k.asked, namespace+"/"+name)
	return k.StaticKeys.SecretKeys(namespace, name)
}

// TestReviewsForNamespacesNotServedTellNothing: the API server only sends namespaces the
// configurations' namespaceSelector matches. A review naming another namespace (kube-system, or
// one not opted in) was forged: it is let through untouched, with no key looked up, nothing read
// live, no Event and no warning, so it learns nothing of that namespace's Secrets (on the old
// main it got "Secret ... not found" for kube-system).
func TestReviewsForNamespacesNotServedTellNothing(t *testing.T) {
	selector, err := labels.Parse("flowauth.io/injection=enabled,kubernetes.io/metadata.name notin (flowauth-system,kube-system)")
	if err != nil {
		t.Fatal(err)
	}
	optedIn := Namespace{Found: true, Labels: map[string]string{"flowauth.io/injection": "enabled", "kubernetes.io/metadata.name": "flows"}}
	for _, tt := range []struct {
		name   string
		ns     Namespace
		served bool
	}{
		{"opted in", optedIn, true},
		{"kube-system, even labelled", Namespace{Found: true, Labels: map[string]string{"flowauth.io/injection": "enabled", "kubernetes.io/metadata.name": "kube-system"}}, false},
		{"not opted in", Namespace{Found: true, Labels: map[string]string{"kubernetes.io/metadata.name": "payments"}}, false},
		{"no such namespace", Namespace{}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var events recordedEvents
			keys := &countingKeys{}
			live := &liveTable{}
			h := newMutator("")
			h.Namespaces, h.Selector, h.Keys, h.Live, h.Events, h.Missing = staticNamespace(tt.ns), selector, keys, live, &events, mutate.MissingDeny
			resp := h.Handle(context.Background(), request(admissionv1.Create, flowRunPod(t)))
			if tt.served {
				if resp.Allowed || len(keys.asked) == 0 {
					t.Errorf("a served namespace was not checked: allowed=%v asked=%v", resp.Allowed, keys.asked)
				}
				return
			}
			if !resp.Allowed || resp.Patch != nil || len(resp.Warnings) > 0 || resp.Result.Message != "" {
				t.Errorf("answer tells something: allowed=%v patch=%s warnings=%q message=%q", resp.Allowed, resp.Patch, resp.Warnings, resp.Result.Message)
			}
			if len(keys.asked) > 0 || len(live.reads) > 0 || len(events) > 0 {
				t.Errorf("looked up %v, read %v, recorded %v", keys.asked, live.reads, events)
			}
		})
	}
}

// TestOneNamespaceCannotSpendAnothersReads: live confirmations are at most MaxConfirmations a
// pod and paced per namespace, so a tenant's flood of pods naming Secrets that do not exist
// leaves every other namespace its reads.
func TestOneNamespaceCannotSpendAnothersReads(t *testing.T) {
	live := &liveTable{}
	h := newMutator("")
	h.Keys, h.Live = &mutate.StaticKeys{}, live
	h.Confirmations = &FairLimiter{PerNamespace: 1, Burst: 16}
	names := make([]string, 20)
	for i := range names {
		names[i] = fmt.Sprintf("CUSTOM_%d", i)
	}
	hostile := podDeclaring(t, strings.Join(names, " "))
	for range 5 {
		req := request(admissionv1.Create, hostile)
		req.Namespace = "tenant"
		h.Handle(context.Background(), req)
	}
	tenantReads := len(live.reads)
	if tenantReads != 16 {
		t.Errorf("the tenant's 5 pods of 20 missing Secrets made %d reads; want its burst, 16 (at most %d a pod)", tenantReads, MaxConfirmations)
	}
	req := request(admissionv1.Create, podDeclaring(t, "AWS_CREDENTIALS"))
	resp := h.Handle(context.Background(), req)
	if len(live.reads) != tenantReads+1 {
		t.Errorf("namespace flows got no read after the tenant's flood: %v", live.reads[tenantReads:])
	}
	if !resp.Allowed {
		t.Fatal(resp.Result)
	}
	// The tenant's next pod is told its Secrets were not all confirmed.
	req = request(admissionv1.Create, hostile)
	req.Namespace = "tenant"
	resp = h.Handle(context.Background(), req)
	if !strings.Contains(strings.Join(resp.Warnings, "\n"), "were not read from the API server") {
		t.Errorf("no word of the reads not made: %q", resp.Warnings)
	}
	// In deny mode, a Secret that was not read may exist: the pod is warned, never refused on
	// the cache's word alone.
	h.Missing = mutate.MissingDeny
	req = request(admissionv1.Create, hostile)
	req.Namespace = "tenant"
	if resp = h.Handle(context.Background(), req); !resp.Allowed {
		t.Errorf("refused on Secrets that were not confirmed: %s", resp.Result.Message)
	}
}

func podDeclaring(t *testing.T, names string) []byte {
	t.Helper()
	pod := corev1.Pod{}
	pod.Name, pod.Namespace = "run", "flows"
	pod.Annotations = map[string]string{mutate.AnnotationSecrets: names}
	pod.Spec.Containers = []corev1.Container{{Name: "flow", Image: "prefect"}}
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestWarningsAreBounded: however many findings a pod causes, the answer's warnings are each
// sent once, add up to at most maxWarnings bytes, and end with one line saying how many were left
// out.
func TestWarningsAreBounded(t *testing.T) {
	var findings []mutate.Finding
	for i := range 2000 {
		findings = append(findings, mutate.Finding{Message: fmt.Sprintf("container %q: env X is already set by the pod; kept it %s", fmt.Sprint("c", i), strings.Repeat("x", 200))})
		findings = append(findings, mutate.Finding{Message: "the same message every time"})
	}
	findings = append(findings, mutate.Finding{Message: strings.Repeat("long ", 1000)})
	got := messages(findings)
	size := 0
	seen := map[string]bool{}
	for _, m := range got {
		size += len(m)
		if seen[m] {
			t.Errorf("sent twice: %.60s", m)
		}
		seen[m] = true
		if len(m) > maxWarning+3 {
			t.Errorf("a warning of %d bytes", len(m))
		}
	}
	if size > maxWarnings+200 {
		t.Errorf("%d bytes of warnings", size)
	}
	if last := got[len(got)-1]; !strings.Contains(last, "more warnings left out") {
		t.Errorf("last warning %q does not say what was left out", last)
	}
}

// TestUnwatchedNamespaceIsToldNotNotFound: with --secret-lookup-namespaces, a pod in an opted-in
// namespace that is not watched is told its Secrets are not checked and why, never "not found"
// (on the old main, the live read was refused with 403 and the cache's "not found" stood).
func TestUnwatchedNamespaceIsToldNotNotFound(t *testing.T) {
	h := newMutator("")
	h.Keys, h.Live, h.Missing, h.KeyNamespaces = &mutate.StaticKeys{}, &liveTable{}, mutate.MissingDeny, []string{"etl"}
	resp := h.Handle(context.Background(), request(admissionv1.Create, flowRunPod(t)))
	if !resp.Allowed || resp.Patch == nil {
		t.Fatalf("refused or not injected: %v", resp.Result)
	}
	all := strings.Join(resp.Warnings, "\n")
	if strings.Contains(all, "not found") || !strings.Contains(all, "secretLookupNamespaces") {
		t.Errorf("warnings: %q", resp.Warnings)
	}
}
