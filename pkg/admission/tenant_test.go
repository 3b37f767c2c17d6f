package admission

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/time/rate"
	admissionv1 "k8s.io/api/admission/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/flowauth/flowauth/pkg/mutate"
)

// The second security review (issue 29): what a tenant who can create pods in one opted-in
// namespace, or who can reach the webhook's Service, sends is never kept, logged or read
// without a bound.

const jobUID = "5f0c1a2e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"

// deniedPodOwnedBy is a flow-run pod that flowauth refuses (an invalid name), controlled by a
// Job of that name and UID.
func deniedPodOwnedBy(t *testing.T, name, job string, uid types.UID) []byte {
	t.Helper()
	controller := true
	pod := corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "flows", Annotations: map[string]string{mutate.AnnotationSecrets: "AWS..X"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: job, UID: uid, Controller: &controller}}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "flow", Image: "prefect"}}},
	}
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestEventsRegardOnlyObjectsTheAPIServerWouldStore: a mutating webhook sees a pod before the
// API server validates it, so its owner reference can name a Job of megabytes, and a forged
// review can say anything. client-go's broadcaster keeps each distinct Event for minutes, keyed
// by that name: on the old main, 300 such pods raised the webhook's peak by 1,552 MiB. An Event
// goes only to an object named as the API server names what it stores.
func TestEventsRegardOnlyObjectsTheAPIServerWouldStore(t *testing.T) {
	for _, tt := range []struct {
		name, job string
		uid       types.UID
		recorded  bool
	}{
		{"a Job the API server could hold", "run-1", jobUID, true},
		{"a 2.5 MB Job name", strings.Repeat("j", 5<<19), jobUID, false},
		{"a Job name of 254 bytes", strings.Repeat("j", 254), jobUID, false},
		{"a Job name with a capital", "Run-1", jobUID, false},
		{"a UID that is no UUID", "run-1", "job-uid", false},
		{"a UID of a megabyte", "run-1", types.UID(strings.Repeat("u", 1<<20)), false},
		{"a braced UUID", "run-1", "{" + jobUID + "}", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var events recordedEvents
			h := newMutator("")
			h.Events = &events
			resp := h.Handle(context.Background(), request(admissionv1.Create, deniedPodOwnedBy(t, "run-1-abcde", tt.job, tt.uid)))
			if resp.Allowed {
				t.Fatal("the pod was not refused")
			}
			if got := len(events) > 0; got != tt.recorded {
				t.Errorf("recorded %d Events, want recorded=%v", len(events), tt.recorded)
			}
			if !tt.recorded {
				if got := testutil.ToFloat64(h.Metrics.events.WithLabelValues(eventInvalidReference)); got != 1 {
					t.Errorf("flowauth_events_total{result=%q} = %v, want 1", eventInvalidReference, got)
				}
			}
		})
	}
	// A forged Job review: the validating path regards the Job as the review names it.
	var events recordedEvents
	h := newMutator("")
	h.Events, h.Keys = &events, &mutate.StaticKeys{}
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: strings.Repeat("j", 1<<20), Namespace: "flows", UID: jobUID},
		Spec: batchv1.JobSpec{Template: flowRunTemplate(map[string]string{mutate.AnnotationSecrets: "AWS_CREDENTIALS"})}}
	v := &TemplateValidator{Pods: h}
	if resp := v.Handle(context.Background(), jobRequest(t, admissionv1.Create, job, "Job", false)); len(resp.Warnings) == 0 {
		t.Fatalf("no warning for a missing Secret: %+v", resp)
	}
	if len(events) > 0 {
		t.Errorf("a forged Job of a megabyte's name got %d Events", len(events))
	}
}

// TestEventsArePacedPerNamespaceAndInAll: however many refused pods a tenant sends, its
// namespace records at most its burst, and all namespaces together at most the total's: what
// the broadcaster keeps is bounded by the total's rate, whatever the names.
func TestEventsArePacedPerNamespaceAndInAll(t *testing.T) {
	var events recordedEvents
	m := NewMetrics(prometheus.NewRegistry())
	// Buckets that never refill: what is recorded is the bursts, whatever the loop's speed.
	p := &PacedEvents{Recorder: &events, Namespaces: &FairLimiter{PerNamespace: 0, Burst: 10}, Total: rate.NewLimiter(0, 50), Metrics: m}
	job := func(ns string) *batchv1.Job {
		return &batchv1.Job{TypeMeta: metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"}, ObjectMeta: metav1.ObjectMeta{Name: "run", Namespace: ns, UID: jobUID}}
	}
	for range 1000 {
		p.Eventf(job("tenant"), nil, corev1.EventTypeWarning, "FlowauthDeniedInvalidName", "CreatePod", "%s", "note")
	}
	if len(events) != 10 {
		t.Errorf("one namespace's 1,000 Events: %d recorded, want its burst of 10", len(events))
	}
	p.Eventf(job("flows"), nil, corev1.EventTypeWarning, "FlowauthDeniedInvalidName", "CreatePod", "%s", "note")
	if len(events) != 11 {
		t.Errorf("another namespace got no Event after the tenant's flood")
	}
	for i := range 1000 {
		p.Eventf(job(fmt.Sprintf("ns-%d", i)), nil, corev1.EventTypeWarning, "FlowauthDeniedInvalidName", "CreatePod", "%s", "note")
	}
	if len(events) != 50 {
		t.Errorf("1,000 namespaces' Events: %d recorded in all, want the total's burst of 50", len(events))
	}
	if got := testutil.ToFloat64(m.events.WithLabelValues(eventPaced)); got != 2001-50 {
		t.Errorf("flowauth_events_total{result=paced} = %v, want %d", got, 2001-50)
	}
}

// lineLog is a logger at verbosity 1 that keeps every line it is given.
type lineLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *lineLog) context() context.Context {
	return logf.IntoContext(context.Background(), funcr.New(func(prefix, args string) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.lines = append(l.lines, prefix+" "+args)
	}, funcr.Options{Verbosity: 1}))
}

func (l *lineLog) longest() int {
	n := 0
	for _, line := range l.lines {
		n = max(n, len(line))
	}
	return n
}

// maxLogLine is the longest log line a request may cause (issue 29's target).
const maxLogLine = 4 << 10

// TestLogLinesCutWhatTheRequestSays: on the old main a refused pod with a 2.5 MB name wrote a
// 2.5 MB log line. Every request-given string in every line is cut.
func TestLogLinesCutWhatTheRequestSays(t *testing.T) {
	huge := strings.Repeat("p", 5<<19)
	var log lineLog
	ctx := log.context()
	h := newMutator("")
	h.Keys = &mutate.StaticKeys{}

	// Refused: a pod named 2.5 MB, owned by a Job named 2.5 MB, with a UID of a megabyte.
	req := request(admissionv1.Create, deniedPodOwnedBy(t, huge, huge, jobUID))
	req.UID = types.UID(strings.Repeat("u", 1<<20))
	h.Handle(ctx, req)
	// Injected, logged at V(1): the same names, a generateName of 2.5 MB, and a status listing
	// thousands of containers the pod names that it does not have.
	pod := corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: huge, Annotations: map[string]string{mutate.AnnotationSecrets: "GITHUB_ACCESS_TOKEN"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "flow", Image: "prefect"}}}}
	for i := range 60 {
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: fmt.Sprintf("%s-%d", strings.Repeat("c", 60), i), Image: "i",
			Env: []corev1.EnvVar{{Name: "GITHUB_ACCESS_TOKEN", Value: "x"}}})
	}
	pod.Annotations[mutate.AnnotationContainers] = "*"
	raw, _ := json.Marshal(pod)
	h.Handle(ctx, request(admissionv1.Create, raw))
	// A Job named 2.5 MB, refused.
	h.Missing = mutate.MissingDeny
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: huge, Namespace: "flows"},
		Spec: batchv1.JobSpec{Template: flowRunTemplate(map[string]string{mutate.AnnotationSecrets: "AWS_CREDENTIALS"})}}
	(&TemplateValidator{Pods: h}).Handle(ctx, jobRequest(t, admissionv1.Create, job, "Job", false))

	if len(log.lines) < 3 {
		t.Fatalf("logged %d lines, want the denial, the injection and the Job's denial", len(log.lines))
	}
	if n := log.longest(); n > maxLogLine {
		t.Errorf("the longest log line is %d bytes; want at most %d", n, maxLogLine)
	}
}

// countingReader counts the reads it passes on.
type countingReader struct {
	client.Reader
	mu    sync.Mutex
	reads int
}

func (c *countingReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	c.mu.Lock()
	c.reads++
	c.mu.Unlock()
	return c.Reader.Get(ctx, key, obj, opts...)
}

// TestForgedNamespacesCostOneSharedBudget: on the old main, a namespace the cache lacked was read
// from the API server before anything checked that it is served, so forged reviews naming random
// namespaces each cost a read on the client that served namespaces' confirmations need. Now
// every namespace that is not served or not known shares one small budget, and served ones keep
// their own.
func TestForgedNamespacesCostOneSharedBudget(t *testing.T) {
	ns := namespaceMeta()
	ns.Name, ns.Labels = "flows", map[string]string{"flowauth.io/injection": "enabled"}
	withDefaults := ns.DeepCopy()
	withDefaults.Annotations = map[string]string{mutate.AnnotationSecrets: "AWS_CREDENTIALS"}
	cache := fake.NewClientBuilder().WithObjects(ns).Build()
	live := &countingReader{Reader: fake.NewClientBuilder().WithObjects(withDefaults).Build()}
	selector, _ := labels.Parse("flowauth.io/injection=enabled")
	h := newMutator("")
	h.Namespaces, h.Selector = CachedNamespaces{Reader: cache, Live: live}, selector
	h.Confirmations = &FairLimiter{PerNamespace: 20, Burst: 40}

	// A Prefect flow-run pod that declares nothing: the one kind whose namespace is read.
	pod := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "run", Labels: map[string]string{mutate.LabelFlowRunIDPrefect2: "x"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "flow", Image: "prefect"}}}}
	raw, _ := json.Marshal(pod)
	start := time.Now()
	for i := range 1000 {
		req := request(admissionv1.Create, raw)
		req.Namespace = fmt.Sprintf("forged-%d", i)
		if resp := h.Handle(context.Background(), req); !resp.Allowed || resp.Patch != nil {
			t.Fatalf("a forged namespace's pod was not let through untouched: %+v", resp)
		}
	}
	// The shared budget: its burst, and what it refilled while the loop ran.
	budget := unservedBurst + int(math.Ceil(time.Since(start).Seconds()*unservedReads))
	if live.reads > budget {
		t.Errorf("1,000 forged namespaces cost %d reads; want at most the shared budget's %d", live.reads, budget)
	}
	if got := testutil.ToFloat64(h.Metrics.nsReads.WithLabelValues("throttled")); got < float64(1000-budget) {
		t.Errorf("flowauth_namespace_reads_total{result=throttled} = %v", got)
	}
	// The served namespace still has its reads: its defaults, set a moment ago, are found.
	before := live.reads
	req := request(admissionv1.Create, raw)
	req.Namespace = "flows"
	if resp := h.Handle(context.Background(), req); !strings.Contains(string(resp.Patch), "AWS_ACCESS_KEY_ID") {
		t.Errorf("the served namespace's new defaults were not read after the flood: %s", resp.Patch)
	}
	if live.reads != before+1 {
		t.Errorf("the served namespace made %d reads, want 1", live.reads-before)
	}
}

// TestServiceAccountTokensAreReadLiveAndRefused: the key cache holds no Secret of a restricted
// type, so a pod that names one has it read from the API server, whose answer carries the type:
// on the old main, an override to a ServiceAccount's token Secret was injected (with no allow-list,
// or NAME=*), and the flow run held that account's Kubernetes rights.
func TestServiceAccountTokensAreReadLiveAndRefused(t *testing.T) {
	live := &liveTable{StaticKeys: mutate.StaticKeys{
		Secrets: map[string][]string{"default-token-x7k2p": {"ca.crt", "namespace", "token"}},
		Types:   map[string]string{"default-token-x7k2p": "kubernetes.io/service-account-token"},
	}}
	for _, allowList := range []string{"", "GITHUB_ACCESS_TOKEN=*", "*"} {
		t.Run("allow-list "+allowList, func(t *testing.T) {
			h := newMutator("")
			h.Keys, h.Live = &mutate.StaticKeys{}, live
			if allowList != "" {
				h.Namespaces = staticNamespace(Namespace{Found: true, Annotations: map[string]string{mutate.AnnotationAllowedSecrets: allowList}})
			}
			pod := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "run", Annotations: map[string]string{
				mutate.AnnotationSecrets: "GITHUB_ACCESS_TOKEN", mutate.SecretOverridePrefix + "GITHUB_ACCESS_TOKEN": "default-token-x7k2p"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "flow", Image: "prefect"}}}}
			raw, _ := json.Marshal(pod)
			resp := h.Handle(context.Background(), request(admissionv1.Create, raw))
			if resp.Allowed || !strings.Contains(resp.Result.Message, "kubernetes.io/service-account-token") {
				t.Errorf("a ServiceAccount token Secret was not refused by its type: allowed=%v %v", resp.Allowed, resp.Result)
			}
		})
	}
}
