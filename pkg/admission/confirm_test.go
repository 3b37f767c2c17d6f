package admission

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/flowauth/flowauth/pkg/mutate"
	"github.com/flowauth/flowauth/pkg/secretmap"
)

// liveTable answers as the API server would, from a table of one namespace's objects (the
// golden cases' StaticKeys), counting its reads.
type liveTable struct {
	mutate.StaticKeys
	err   error
	reads []string
}

func (l *liveTable) Secret(_ context.Context, namespace, name string) ([]string, string, bool, error) {
	l.reads = append(l.reads, "Secret "+namespace+"/"+name)
	keys, ok := l.SecretKeys(namespace, name)
	return keys, l.SecretType(namespace, name), ok, l.err
}

func (l *liveTable) ConfigMapKeys(_ context.Context, namespace, name string) ([]string, bool, error) {
	l.reads = append(l.reads, "ConfigMap "+namespace+"/"+name)
	keys, ok := l.StaticKeys.ConfigMapKeys(namespace, name)
	return keys, ok, l.err
}

func flowRunPod(t *testing.T, envFrom ...corev1.EnvFromSource) []byte {
	t.Helper()
	pod := corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "run", Namespace: "flows", Annotations: map[string]string{mutate.AnnotationSecrets: "AWS_CREDENTIALS"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "flow", Image: "prefect", EnvFrom: envFrom}}},
	}
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestNothingIsCalledMissingBeforeTheAPIServerConfirms: what the key cache lacks is read once
// from the API server before a warning or denial; only what the server lacks too is reported,
// and a failed read leaves the cache's answer in force.
func TestNothingIsCalledMissingBeforeTheAPIServerConfirms(t *testing.T) {
	aws := []string{"ACCESS_KEY", "SECRET_ACCESS_KEY"}
	tests := []struct {
		name        string
		cache, live mutate.StaticKeys
		liveErr     error
		envFrom     []corev1.EnvFromSource
		wantReads   []string
		wantDenied  bool
		wantInPatch []string
		wantNot     []string
	}{
		{name: "in the cache: no read", cache: mutate.StaticKeys{Secrets: map[string][]string{"aws-credentials": aws}},
			wantInPatch: []string{"AWS_ACCESS_KEY_ID"}},
		{name: "created a moment ago: found by the read", live: mutate.StaticKeys{Secrets: map[string][]string{"aws-credentials": aws}},
			wantReads: []string{"Secret flows/aws-credentials"}, wantInPatch: []string{"AWS_ACCESS_KEY_ID"}},
		{name: "missing for real: denied", wantReads: []string{"Secret flows/aws-credentials"}, wantDenied: true},
		{name: "a key added a moment ago", cache: mutate.StaticKeys{Secrets: map[string][]string{"aws-credentials": {"ACCESS_KEY"}}}, live: mutate.StaticKeys{Secrets: map[string][]string{"aws-credentials": aws}},
			wantReads: []string{"Secret flows/aws-credentials"}, wantInPatch: []string{"AWS_SECRET_ACCESS_KEY"}},
		{name: "the read fails: the cache's answer stands", liveErr: errors.New("timeout"), live: mutate.StaticKeys{Secrets: map[string][]string{"aws-credentials": aws}},
			wantReads: []string{"Secret flows/aws-credentials"}, wantDenied: true},
		{name: "an envFrom source the cache lacks is read, and its keys win", cache: mutate.StaticKeys{Secrets: map[string][]string{"aws-credentials": aws}},
			live:      mutate.StaticKeys{ConfigMaps: map[string][]string{"env": {"AWS_ACCESS_KEY_ID"}}},
			envFrom:   []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "env"}}}},
			wantReads: []string{"ConfigMap flows/env"}, wantInPatch: []string{"AWS_SECRET_ACCESS_KEY"}, wantNot: []string{`"name":"AWS_ACCESS_KEY_ID"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			live := &liveTable{StaticKeys: tt.live, err: tt.liveErr}
			h := &PodMutator{Secrets: secretmap.StaticStore(secretmap.Builtin()), Keys: &tt.cache, Live: live,
				Missing: mutate.MissingDeny, Metrics: NewMetrics(prometheus.NewRegistry())}
			resp := h.Handle(context.Background(), request(admissionv1.Create, flowRunPod(t, tt.envFrom...)))
			if strings.Join(live.reads, ", ") != strings.Join(tt.wantReads, ", ") {
				t.Errorf("reads = %v, want %v", live.reads, tt.wantReads)
			}
			if denied := !resp.Allowed; denied != tt.wantDenied {
				t.Fatalf("denied = %v (%v)", denied, resp.Result)
			}
			patch := string(resp.Patch)
			for _, w := range tt.wantInPatch {
				if !strings.Contains(patch, w) {
					t.Errorf("patch lacks %s: %s", w, patch)
				}
			}
			for _, w := range tt.wantNot {
				if strings.Contains(patch, w) {
					t.Errorf("patch has %s: %s", w, patch)
				}
			}
			result := "found"
			switch {
			case tt.liveErr != nil:
				result = "error"
			case tt.wantDenied:
				result = "not_found"
			}
			if n := len(tt.wantReads); n > 0 {
				if got := testutil.ToFloat64(h.Metrics.confirms.WithLabelValues(strings.Fields(tt.wantReads[0])[0], result)); got != float64(n) {
					t.Errorf("flowauth_key_cache_confirmations_total{result=%q} = %v", result, got)
				}
			}
		})
	}
}

// TestNamespaceDefaultsTheCacheLacksAreReadLive: the cache alone answers Namespace; the handler
// reads from the API server a namespace the cache lacks (created a moment ago), and one it holds
// when a Prefect pod that declares nothing finds no defaults there.
func TestNamespaceDefaultsTheCacheLacksAreReadLive(t *testing.T) {
	nsMeta := func(name, defaults string) client.Object {
		ns := namespaceMeta()
		ns.Name = name
		if defaults != "" {
			ns.Annotations = map[string]string{mutate.AnnotationSecrets: defaults}
		}
		return ns
	}
	cache := fake.NewClientBuilder().WithObjects(nsMeta("old", ""), nsMeta("set", "GCP_CREDENTIALS")).Build()
	live := fake.NewClientBuilder().WithObjects(nsMeta("old", "AWS_CREDENTIALS"), nsMeta("uncached", "SLACK_WEBHOOK_URL"), nsMeta("set", "GCP_CREDENTIALS")).Build()
	c := CachedNamespaces{Reader: cache, Live: live}
	for ns, want := range map[string]string{"old": "", "uncached": "", "set": "GCP_CREDENTIALS", "nowhere": ""} {
		got, err := c.Namespace(context.Background(), ns)
		if err != nil || got.Defaults() != want {
			t.Errorf("Namespace(%s).Defaults() = %q, %v; want %q", ns, got.Defaults(), err, want)
		}
	}
	// A Prefect pod that declares nothing in the namespace whose cached defaults are empty: the
	// handler reads them live and finds the ones set a moment ago.
	h := &PodMutator{Secrets: secretmap.StaticStore(secretmap.Builtin()), Namespaces: c}
	pod := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "run", Labels: map[string]string{mutate.LabelFlowRunIDPrefect2: "x"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "flow", Image: "prefect"}}}}
	raw, _ := json.Marshal(pod)
	req := request(admissionv1.Create, raw)
	req.Namespace = "old"
	if resp := h.Handle(context.Background(), req); !strings.Contains(string(resp.Patch), "AWS_ACCESS_KEY_ID") {
		t.Errorf("the namespace's new defaults were not applied: %s", resp.Patch)
	}
	req.Namespace = "uncached"
	if resp := h.Handle(context.Background(), req); !strings.Contains(string(resp.Patch), "SLACK_WEBHOOK_URL") {
		t.Errorf("the defaults of a namespace the cache lacks were not read: %s", resp.Patch)
	}
}
