package e2e

import (
	"context"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flowauth/flowauth/test/localcluster"
)

// TestProcessCPUIsMeasured: what make burst reads per process. The control plane's processes are
// found by name, and the API server's and the webhook's CPU time grow while pods are created (200, so
// each spends well over the 10 ms the kernel counts in).
func TestProcessCPUIsMeasured(t *testing.T) {
	pids, err := cluster.ControlPlanePIDs()
	if err != nil {
		t.Fatal(err)
	}
	apiserver, webhook := pids["kube-apiserver"], cluster.WebhookPID()
	if webhook == 0 {
		t.Fatal("no webhook process")
	}
	beforeAPI, beforeWebhook := localcluster.CPUTime(apiserver), localcluster.CPUTime(webhook)
	if beforeAPI <= 0 || beforeWebhook <= 0 {
		t.Fatalf("CPU time so far: kube-apiserver %s, webhook %s; want both above 0", beforeAPI, beforeWebhook)
	}
	ctx := context.Background()
	ns := newNamespace(t, true)
	for i := range 200 {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cpu-%03d", i), Namespace: ns, Annotations: map[string]string{"flowauth.io/secrets": "AWS_CREDENTIALS"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "flow", Image: "prefecthq/prefect:3-python3.12"}}},
		}
		if err := cluster.Client.Create(ctx, pod); err != nil {
			t.Fatal(err)
		}
	}
	if after := localcluster.CPUTime(apiserver); after <= beforeAPI {
		t.Errorf("kube-apiserver CPU time did not grow over 200 pod creations: %s then %s", beforeAPI, after)
	}
	if after := localcluster.CPUTime(webhook); after <= beforeWebhook {
		t.Errorf("webhook CPU time did not grow over 200 admissions: %s then %s", beforeWebhook, after)
	}
}
