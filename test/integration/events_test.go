package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flowauth/flowauth/pkg/mutate"
)

// TestRefusedPodsOwnedByHugeNamesRecordNoEvent goes through the API server, which calls mutating
// webhooks before it validates the object: a pod whose controller reference names a Job of
// 2.5 MB reaches flowauth as sent. On the old main each such refused pod was an Event client-go's
// broadcaster kept for minutes (40 of them raised the webhook's peak by 224 MiB). Now the pod is
// refused with flowauth's message and no Event is recorded for it, while a pod owned by a Job the
// API server could hold gets its Event.
func TestRefusedPodsOwnedByHugeNamesRecordNoEvent(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, true, "")
	controller := true
	refused := func(job string, uid types.UID) *corev1.Pod {
		pod := flowRunPod(ns, map[string]string{mutate.AnnotationSecrets: "AWS..X"})
		pod.OwnerReferences = []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: job, UID: uid, Controller: &controller}}
		return pod
	}
	invalidBefore := eventsCounted(t, "invalid_reference")
	huge := strings.Repeat("j", 5<<19)
	for i := range 5 {
		err := k8s.Create(ctx, refused(huge+string(rune('a'+i)), "5f0c1a2e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"))
		if err == nil || !strings.Contains(err.Error(), "flowauth.io/secrets") {
			t.Fatalf("pod %d owned by a 2.5 MB Job name: %v, want flowauth's refusal", i, err)
		}
	}
	if got := eventsCounted(t, "invalid_reference") - invalidBefore; got != 5 {
		t.Errorf("flowauth_events_total{result=invalid_reference} rose by %v, want 5", got)
	}
	// A Job the API server could hold: its refused pod's Event is stored, regarding that Job.
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "run-1", Namespace: ns, UID: "6a1d2b3f-4c5e-4f60-9b0c-1d2e3f4a5b6c"}}
	if err := k8s.Create(ctx, refused(job.Name, job.UID)); err == nil {
		t.Fatal("the pod owned by run-1 was not refused")
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		var list eventsv1.EventList
		if err := k8s.List(ctx, &list, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		var regarding []string
		for _, e := range list.Items {
			if len(e.Regarding.Name) > 253 {
				t.Fatalf("an Event regards an object named %d bytes long", len(e.Regarding.Name))
			}
			regarding = append(regarding, e.Regarding.Name+" "+e.Reason)
		}
		if len(regarding) == 1 && regarding[0] == "run-1 FlowauthDeniedInvalidSecretName" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Events in %s: %q, want one, on run-1", ns, regarding)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// eventsCounted is flowauth_events_total for a result.
func eventsCounted(t *testing.T, result string) float64 {
	t.Helper()
	families, err := registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "flowauth_events_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return counterValue(m)
				}
			}
		}
	}
	return 0
}
