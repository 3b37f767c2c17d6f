// Command burst creates 2,000 flow-run pods through the local control plane as fast as the API
// server takes them (a backfill, a mapped flow), with flowauth registered as in the e2e tests,
// and reports the time, failures, pods not injected, and the webhook's own latency quantiles
// from its controller_runtime_webhook_latency_seconds histogram. `make burst` runs it.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flowauth/flowauth/test/localcluster"
)

func main() {
	n := flag.Int("n", 2000, "pods to create")
	workers := flag.Int("c", 32, "concurrent creators")
	flag.Parse()
	if err := run(*n, *workers); err != nil {
		fmt.Fprintln(os.Stderr, "burst:", err)
		os.Exit(1)
	}
}

func run(n, workers int) error {
	root, _ := filepath.Abs(".")
	work, err := os.MkdirTemp("", "flowauth-burst-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(work) }()
	ctx := context.Background()
	c, err := localcluster.Start(ctx, localcluster.Options{RepoRoot: root, WorkDir: work, WebhookArgs: []string{"--log-level=error"}})
	if err != nil {
		return err
	}
	defer func() { _ = c.Stop() }()
	if _, stderr, err := c.Kubectl(ctx, "apply", "-f", "examples/namespace.yaml"); err != nil {
		return fmt.Errorf("%w: %s", err, stderr)
	}
	if _, stderr, err := c.Kubectl(ctx, "-n", "flows", "apply", "-f", "examples/secrets.yaml"); err != nil {
		return fmt.Errorf("%w: %s", err, stderr)
	}

	var failed, notInjected atomic.Int64
	var firstErr atomic.Value
	jobs := make(chan int)
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for i := range jobs {
				pod := &corev1.Pod{
					ObjectMeta: metav1.ObjectMeta{
						Name: fmt.Sprintf("burst-%05d", i), Namespace: "flows",
						Labels:      map[string]string{"prefect.io/flow-run-id": fmt.Sprintf("00000000-0000-4000-8000-%012d", i)},
						Annotations: map[string]string{"flowauth.io/secrets": "AWS_CREDENTIALS, GCP_CREDENTIALS"},
					},
					Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "flow", Image: "prefecthq/prefect:3-python3.12"}}},
				}
				if err := c.Client.Create(ctx, pod, &client.CreateOptions{}); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				if pod.Annotations["flowauth.io/status"] != "injected=AWS_CREDENTIALS,GCP_CREDENTIALS" {
					notInjected.Add(1)
				}
			}
		})
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	elapsed := time.Since(start)

	p50, p99, count, err := latency(ctx, c.MetricsURL)
	if err != nil {
		return err
	}
	fmt.Printf("burst: %d flow-run pods created through the API server by %d concurrent clients in %s (%.0f pods/s)\n",
		n, workers, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds())
	fmt.Printf("failed %d, stored without injection %d\n", failed.Load(), notInjected.Load())
	fmt.Printf("webhook latency from its own histogram (%.0f requests): p50 <= %s, p99 <= %s (bucket upper bounds)\n", count, p50, p99)
	if failed.Load() > 0 || notInjected.Load() > 0 {
		return fmt.Errorf("%d failed, %d not injected; first error: %v", failed.Load(), notInjected.Load(), firstErr.Load())
	}
	return nil
}

// latency reads the pod webhook's latency histogram and returns the bucket bounds holding the
// 50th and 99th percentiles.
func latency(ctx context.Context, url string) (p50, p99 string, count float64, err error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", "", 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	type bucket struct{ le, n float64 }
	var buckets []bucket
	s := bufio.NewScanner(resp.Body)
	for s.Scan() {
		line := s.Text()
		if !strings.HasPrefix(line, "controller_runtime_webhook_latency_seconds_bucket{") || !strings.Contains(line, `webhook="/mutate-v1-pod"`) {
			continue
		}
		_, rest, _ := strings.Cut(line, `le="`)
		le, _, _ := strings.Cut(rest, `"`)
		fields := strings.Fields(line)
		n, _ := strconv.ParseFloat(fields[len(fields)-1], 64)
		bound := math.Inf(1)
		if le != "+Inf" {
			bound, _ = strconv.ParseFloat(le, 64)
		}
		buckets = append(buckets, bucket{bound, n})
	}
	sort.Slice(buckets, func(i, j int) bool { return buckets[i].le < buckets[j].le })
	if len(buckets) == 0 {
		return "", "", 0, fmt.Errorf("no webhook latency histogram at %s", url)
	}
	count = buckets[len(buckets)-1].n
	at := func(q float64) string {
		for _, b := range buckets {
			if b.n >= q*count {
				if math.IsInf(b.le, 1) {
					return "+Inf"
				}
				return (time.Duration(b.le * float64(time.Second))).String()
			}
		}
		return "+Inf"
	}
	return at(0.5), at(0.99), count, nil
}
