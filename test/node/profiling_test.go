package node

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flowauth/flowauth/test/localcluster"
)

// TestProfilingReachesOnlyAPortForward: with profiling.enabled the chart's pods serve Go's
// profiles on their loopback: `kubectl port-forward` reaches them, while the pod's own address
// (what a Service or another pod would use) is refused. The chart is put back as it was after.
func TestProfilingReachesOnlyAPortForward(t *testing.T) {
	needNode(t)
	upgrade := func(enabled string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
		defer cancel()
		if _, err := cluster.Helm(ctx, "upgrade", "flowauth", "charts/flowauth", "--namespace", localcluster.FlowauthNamespace,
			"--reuse-values", "--set", "profiling.enabled="+enabled, "--wait", "--timeout", "3m"); err != nil {
			t.Fatal(err)
		}
	}
	upgrade("true")
	t.Cleanup(func() { upgrade("false") })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	var pods corev1.PodList
	if err := cluster.Client.List(ctx, &pods, client.InNamespace(localcluster.FlowauthNamespace), client.MatchingLabels{"app.kubernetes.io/name": "flowauth"}); err != nil {
		t.Fatal(err)
	}
	var pod *corev1.Pod
	for i, p := range pods.Items {
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && strings.Contains(strings.Join(p.Spec.Containers[0].Args, " "), "--pprof-bind-address=127.0.0.1:6060") {
			pod = &pods.Items[i]
			break
		}
	}
	if pod == nil {
		t.Fatal("no running flowauth pod with --pprof-bind-address=127.0.0.1:6060 after the upgrade")
	}

	forward := cluster.KubectlCmd(ctx, "port-forward", "-n", localcluster.FlowauthNamespace, "--address", "127.0.0.1", "pod/"+pod.Name, ":6060")
	var stderr localcluster.SyncBuffer
	forward.Stderr = &stderr
	out, err := forward.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := forward.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = forward.Process.Kill(); _ = forward.Wait() }()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("kubectl port-forward printed %q: %v\n%s", line, err, stderr.String())
	}
	local := regexp.MustCompile(`Forwarding from (127\.0\.0\.1:\d+) -> 6060`).FindStringSubmatch(line)
	if local == nil {
		t.Fatalf("kubectl port-forward printed %q", line)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+local[1]+"/debug/pprof/cmdline", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("through the port-forward: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "--pprof-bind-address=127.0.0.1:6060") {
		t.Errorf("/debug/pprof/cmdline through the port-forward: %s %q", resp.Status, body)
	}

	// From the node's own network namespace the pod's address routes, as a Service's would: nothing
	// listens there on the profiling port.
	conn, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", net.JoinHostPort(pod.Status.PodIP, "6060"))
	if err == nil {
		_ = conn.Close()
		t.Errorf("%s:6060 (the pod's address) accepted a connection; profiles must be reachable on the pod's loopback only", pod.Status.PodIP)
	}
	// ... while the webhook's own port there does, so the refusal above is not a routing failure.
	conn, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", net.JoinHostPort(pod.Status.PodIP, "9443"))
	if err != nil {
		t.Errorf("%s:9443 (the webhook) is not reachable from the node either: %v", pod.Status.PodIP, err)
	} else {
		_ = conn.Close()
	}
}
