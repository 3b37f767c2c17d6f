package localcluster

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// FlowsNamespace creates an opted-in namespace with the Secret CreateFlowRun's pods declare
// (github-access-token), waits for its default ServiceAccount (pods are refused until it exists),
// and deletes it when t ends.
func (c *Cluster) FlowsNamespace(t testing.TB, name string) string {
	t.Helper()
	c.MustKubectl(t, "create", "namespace", name)
	c.MustKubectl(t, "label", "namespace", name, "flowauth.io/injection=enabled")
	c.MustKubectl(t, "-n", name, "create", "secret", "generic", "github-access-token", "--from-literal=token="+name)
	t.Cleanup(func() { c.MustKubectl(t, "delete", "namespace", name, "--wait=false") })
	c.MustKubectl(t, "-n", name, "wait", "--for=create", "serviceaccount/default", "--timeout=30s")
	return name
}

// CreateFlowRun creates one flow-run pod in ns asking for GITHUB_ACCESS_TOKEN (from the Secret
// github-access-token), named name or, when name is "", by the API server. It never runs: it
// selects no node, so only admission is exercised. It returns the pod as stored, and an error when
// the creation failed or the pod was stored without its injection.
func (c *Cluster) CreateFlowRun(ctx context.Context, ns, name string) (*corev1.Pod, error) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: map[string]string{"flowauth.io/secrets": "GITHUB_ACCESS_TOKEN"}},
		Spec: corev1.PodSpec{NodeSelector: map[string]string{"flowauth.io/no-such-node": "true"},
			Containers: []corev1.Container{{Name: "flow", Image: c.Images.Pause}}},
	}
	if name == "" {
		pod.GenerateName = "run-"
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := c.Client.Create(ctx, pod); err != nil {
		return pod, err
	}
	if status := pod.Annotations["flowauth.io/status"]; !strings.HasPrefix(status, "injected=GITHUB_ACCESS_TOKEN") || len(pod.Spec.Containers[0].Env) == 0 {
		return pod, fmt.Errorf("pod %s stored without its injection: status %q", pod.Name, status)
	}
	seen := map[string]bool{}
	for _, e := range pod.Spec.Containers[0].Env {
		if seen[e.Name] {
			return pod, fmt.Errorf("pod %s stored with %s twice: injected twice", pod.Name, e.Name)
		}
		seen[e.Name] = true
	}
	return pod, nil
}

// Creation is one flow-run pod creation of a FlowRunStream: when it was sent, how long the API
// server took to answer, and what went wrong (nil when the pod was stored with its injection).
type Creation struct {
	At   time.Time
	Took time.Duration
	Err  error
}

// FlowRunStream creates a flow-run pod (GITHUB_ACCESS_TOKEN from the Secret github-access-token)
// in a namespace every interval, each on its own, whether or not the ones before were answered,
// as independent flow runs arrive. The pods never run (they select no node): only admission is
// exercised. Stop ends it and returns every creation in the order sent.
type FlowRunStream struct {
	stop context.CancelFunc
	wg   sync.WaitGroup
	mu   sync.Mutex
	all  []*Creation
}

// StartFlowRunStream starts the stream; the namespace must be opted in and hold the Secret.
func (c *Cluster) StartFlowRunStream(ns string, interval time.Duration) *FlowRunStream {
	return StartStream(interval, func(ctx context.Context) error {
		_, err := c.CreateFlowRun(ctx, ns, "")
		return err
	})
}

// StartStream calls create every interval, each call on its own whether or not the ones before
// returned, until Stop; each call is a Creation.
func StartStream(interval time.Duration, create func(context.Context) error) *FlowRunStream {
	ctx, cancel := context.WithCancel(context.Background())
	s := &FlowRunStream{stop: cancel}
	s.wg.Go(func() {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			cr := &Creation{At: time.Now()}
			s.mu.Lock()
			s.all = append(s.all, cr)
			s.mu.Unlock()
			s.wg.Go(func() {
				err := create(context.Background())
				s.mu.Lock()
				cr.Took, cr.Err = time.Since(cr.At), err
				s.mu.Unlock()
			})
		}
	})
	return s
}

// Stop ends the stream, waits for every creation's answer and returns them all.
func (s *FlowRunStream) Stop() []Creation {
	s.stop()
	s.wg.Wait()
	out := make([]Creation, len(s.all))
	for i, c := range s.all {
		out[i] = *c
	}
	return out
}

// Failures summarises creations: how many failed, the span from the first failed creation's
// sending to the last's answer, and the first error.
func Failures(all []Creation) (failed int, span time.Duration, first error) {
	var from, to time.Time
	for _, c := range all {
		if c.Err == nil {
			continue
		}
		failed++
		if first == nil {
			first, from = c.Err, c.At
		}
		if end := c.At.Add(c.Took); end.After(to) {
			to = end
		}
	}
	if failed > 0 {
		span = to.Sub(from)
	}
	return failed, span, first
}

// WaitPoliciesInForce waits until flowauth's admission policies inject a flow-run pod in namespace
// ns and refuse a bad one (dry-run creations): the API server loads each policy a moment after it
// is created, each on its own.
func (c *Cluster) WaitPoliciesInForce(ctx context.Context, ns string) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		probe := func(names string) (*corev1.Pod, error) {
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{GenerateName: "policy-probe-", Namespace: ns, Annotations: map[string]string{"flowauth.io/secrets": names}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "flow", Image: c.Images.Pause}}},
			}
			return pod, c.Client.Create(ctx, pod, client.DryRunAll)
		}
		pod, err := probe("GITHUB_ACCESS_TOKEN")
		_, refusal := probe("not-a-name")
		if err == nil && len(pod.Spec.Containers[0].Env) > 0 && refusal != nil && strings.Contains(refusal.Error(), "flowauth: ") {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("flowauth's policies did not inject a dry-run flow-run pod in %s within 60 s (last error: %w)", ns, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
