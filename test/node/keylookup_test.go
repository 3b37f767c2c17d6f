package node

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flowauth/flowauth/test/localcluster"
)

// TestMissingSecretWithoutKeyLookupStopsTheContainer is the README's known limit, shown on a real
// node: with the default secretLookup=none flowauth injects blindly, and the kubelet refuses to
// start a container whose Secret does not exist, naming it.
func TestMissingSecretWithoutKeyLookupStopsTheContainer(t *testing.T) {
	needNode(t)
	ns := newNamespace(t, "nosecret")
	job := exampleJob(t, "prefect2-flow-run-job.yaml", "GITHUB_ACCESS_TOKEN")
	if stderr := apply(t, ns, job); strings.Contains(stderr, "Warning") {
		t.Errorf("without key lookup, kubectl apply printed a warning: %s", stderr)
	}
	ctx := context.Background()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var pods corev1.PodList
		if err := cluster.Client.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{"job-name": job.Name}); err != nil {
			t.Fatal(err)
		}
		if len(pods.Items) == 1 && len(pods.Items[0].Status.ContainerStatuses) == 1 {
			if w := pods.Items[0].Status.ContainerStatuses[0].State.Waiting; w != nil && w.Reason == "CreateContainerConfigError" {
				if want := `secret "github-access-token" not found`; !strings.Contains(w.Message, want) {
					t.Errorf("the kubelet's message %q does not name the Secret (%s)", w.Message, want)
				}
				t.Logf("the container waits: %s: %s", w.Reason, w.Message)
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no CreateContainerConfigError for a missing Secret: %+v", pods.Items)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// TestMissingSecretWithKeyLookupWarnsAtApply: after `helm upgrade --set secretLookup=keys` (a
// rolling update of the in-cluster replicas), `kubectl apply` of the same Job warns, naming the
// Secret and the command that creates it.
func TestMissingSecretWithKeyLookupWarnsAtApply(t *testing.T) {
	needNode(t)
	ctx := context.Background()
	if _, err := cluster.Helm(ctx, "upgrade", "flowauth", "charts/flowauth", "--namespace", localcluster.FlowauthNamespace,
		"--reuse-values", "--set", "secretLookup=keys", "--wait", "--timeout", "5m"); err != nil {
		t.Fatal(err)
	}
	kubectl(t, "-n", localcluster.FlowauthNamespace, "rollout", "status", "deployment/flowauth", "--timeout=3m")
	ns := newNamespace(t, "warned")
	job := exampleJob(t, "prefect2-flow-run-job.yaml", "GITHUB_ACCESS_TOKEN")
	// The replicas' key caches sync after they turn Ready; the Job webhook answers from them.
	want := fmt.Sprintf(`Warning: flowauth: namespace %q: Secret "github-access-token" not found; GITHUB_ACCESS_TOKEN needs it (keys token). Create it: kubectl create secret generic github-access-token -n %s --from-literal=token=<value>`, ns, ns)
	if stderr := apply(t, ns, job); !strings.Contains(stderr, want) {
		t.Errorf("kubectl apply printed:\n%s\nwant:\n%s", stderr, want)
	}
}
