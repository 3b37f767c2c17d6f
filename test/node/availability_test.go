package node

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flowauth/flowauth/test/localcluster"
)

// TestRestartsLoseNoAdmission: under a steady stream of flow-run pod creations through the API
// server, deleting one flowauth pod and then `kubectl rollout restart` of the Deployment lose no
// admission: every creation is answered, and every answer is injected. The PodDisruptionBudget,
// readiness, the shutdown delay and maxUnavailable: 0 working together, in a real cluster with
// kube-proxy, EndpointSlices and the kubelet's termination. Creations are server-side dry runs:
// admission runs in full (sideEffects: NoneOnDryRun) and nothing piles up on the node.
func TestRestartsLoseNoAdmission(t *testing.T) {
	needNode(t)
	ns := newNamespace(t, "stream")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var answered, failed atomic.Int64
	var firstFailure atomic.Value
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			for ctx.Err() == nil {
				pod := &corev1.Pod{
					ObjectMeta: metav1.ObjectMeta{GenerateName: fmt.Sprintf("stream-%d-", w), Namespace: ns,
						Annotations: map[string]string{"flowauth.io/secrets": "AWS_CREDENTIALS"}},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "flow", Image: cluster.Images.Probe}}},
				}
				err := cluster.Client.Create(context.Background(), pod, client.DryRunAll)
				switch {
				case err != nil:
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, err.Error())
				case pod.Annotations["flowauth.io/status"] != "injected=AWS_CREDENTIALS":
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, "not injected: "+pod.Annotations["flowauth.io/status"])
				default:
					answered.Add(1)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	fns := localcluster.FlowauthNamespace
	time.Sleep(2 * time.Second)
	pods := kubectl(t, "-n", fns, "get", "pods", "-l", "app.kubernetes.io/name=flowauth", "-o", "jsonpath={.items[0].metadata.name}")
	kubectl(t, "-n", fns, "delete", "pod", pods, "--wait=true")
	kubectl(t, "-n", fns, "rollout", "status", "deployment/flowauth", "--timeout=3m")
	afterDelete := answered.Load()
	kubectl(t, "-n", fns, "rollout", "restart", "deployment/flowauth")
	kubectl(t, "-n", fns, "rollout", "status", "deployment/flowauth", "--timeout=5m")
	time.Sleep(2 * time.Second)
	cancel()
	wg.Wait()
	t.Logf("%d admissions answered and injected (%d by the end of the pod deletion), %d failed", answered.Load(), afterDelete, failed.Load())
	if failed.Load() != 0 {
		t.Errorf("%d admissions failed; the first: %v", failed.Load(), firstFailure.Load())
	}
	if afterDelete < 20 || answered.Load()-afterDelete < 20 {
		t.Errorf("too few admissions to tell (%d during the deletion, %d during the rollout)", afterDelete, answered.Load()-afterDelete)
	}
}
