// Command scale is `make scale`: flowauth's key lookup (--secret-lookup=keys) in a large cluster.
// It starts the local control plane with flowauth registered (--missing-secret=deny), measures
// the webhook on an empty cluster, fills the API server (namespaces, small Secrets with three keys,
// Helm release Secrets of HELM_KIB each, ConfigMaps), then, with the API server serving lists the
// two ways clusters do (WatchList on, the default since 1.34; off, as 1.33 and before), restarts
// the webhook and reports its time to ready, peak and settled RSS, admission p50/p99 under load
// and the API server's peak; then restarts the API server under it and reports the webhook's peak
// during the relist. Last, Secret-then-pod pairs are created back to back at that size and the
// pods called missing are counted (each is a false denial).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/flowauth/flowauth/internal/results"
	"github.com/flowauth/flowauth/test/localcluster"
)

// size is what the cluster is filled with.
type size struct {
	namespaces, secrets, helm, helmKiB, configMaps int
	// manyKeys ConfigMaps hold about manyKeysKiB of key names each (empty values): what an object
	// kept whole in the key cache would cost (issue 22).
	manyKeys, manyKeysKiB int
}

func (s size) watched() int { return s.secrets + s.configMaps + s.manyKeys }

func (s size) String() string {
	out := fmt.Sprintf("%d namespaces, %d small Secrets, %d Helm release Secrets of %d KiB, %d ConfigMaps", s.namespaces, s.secrets, s.helm, s.helmKiB, s.configMaps)
	if s.manyKeys > 0 {
		out += fmt.Sprintf(", %d ConfigMaps of %d KiB of key names", s.manyKeys, s.manyKeysKiB)
	}
	return out
}

// row is one measurement of the webhook.
type row struct {
	what                  string
	ready                 time.Duration
	peakKiB, settledKiB   int
	p50, p99              time.Duration
	apiserverPeakKiB      int
	answered, failed      int
	objects               string
	relistPeakKiB, relist int
}

func main() {
	var sz size
	flag.IntVar(&sz.namespaces, "namespaces", 1000, "namespaces")
	flag.IntVar(&sz.secrets, "secrets", 50000, "small Secrets (three keys each), spread over the namespaces")
	flag.IntVar(&sz.helm, "helm", 1000, "Helm release Secrets (type helm.sh/release.v1, label owner=helm)")
	flag.IntVar(&sz.helmKiB, "helm-kib", 500, "size of each Helm release Secret, KiB")
	flag.IntVar(&sz.configMaps, "configmaps", 10000, "ConfigMaps (three keys each)")
	flag.IntVar(&sz.manyKeys, "many-keys", 0, "ConfigMaps holding -many-keys-kib of key names each, with empty values (issue 22 asks for 100)")
	flag.IntVar(&sz.manyKeysKiB, "many-keys-kib", 1000, "key names in each of the -many-keys ConfigMaps, KiB (a ConfigMap holds at most 1 MiB)")
	quick := flag.Bool("quick", false, "the quick size: 100 namespaces, 10,000 Secrets, 200 Helm releases, 2,000 ConfigMaps")
	fill := flag.Int("c", 32, "concurrent creators while filling")
	loadFor := flag.Duration("load", 5*time.Second, "length of each admission load")
	loadC := flag.Int("load-c", 8, "concurrent admission requests")
	pairs := flag.Int("back-to-back", 300, "Secret-then-pod pairs created back to back at size (0 skips)")
	webhookBin := flag.String("webhook-bin", "", "measure this webhook binary instead of one built from this tree (e.g. an earlier commit's)")
	page := flag.String("results", "", "write the report into this page's \"make scale\" section (make scale: docs/performance.md)")
	flag.Parse()
	if *quick {
		sz = size{namespaces: 100, secrets: 10000, helm: 200, helmKiB: sz.helmKiB, configMaps: 2000, manyKeys: sz.manyKeys, manyKeysKiB: sz.manyKeysKiB}
	}
	logf.SetLogger(logr.Discard())
	signal.Ignore(syscall.SIGPIPE)
	report := results.New("scale")
	if err := run(report.Out(), sz, *fill, *loadFor, *loadC, *pairs, *webhookBin); err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(1)
	}
	if err := report.Write(*page); err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(1)
	}
}

func run(out io.Writer, sz size, fill int, loadFor time.Duration, loadC, pairs int, webhookBin string) error {
	root, _ := filepath.Abs(".")
	work, err := os.MkdirTemp("", "flowauth-scale-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(work) }()
	if webhookBin != "" {
		if webhookBin, err = filepath.Abs(webhookBin); err != nil {
			return err
		}
	}
	ctx := context.Background()
	fmt.Fprintf(out, "flowauth key lookup at scale: %s; admission load %s at %d concurrent requests.\n", sz, loadFor, loadC)
	c, err := localcluster.Start(ctx, localcluster.Options{RepoRoot: root, WorkDir: work, WebhookBin: webhookBin,
		WebhookArgs: []string{"--log-level=error", "--secret-lookup=keys", "--missing-secret=deny"}})
	if err != nil {
		return err
	}
	defer func() { _ = c.Stop() }()
	cfg := rest.CopyConfig(c.Config)
	cfg.QPS, cfg.Burst = 5000, 5000
	k8s, err := client.New(cfg, client.Options{})
	if err != nil {
		return err
	}
	// The flow run the load asks about, and its Secret: present in the empty cluster too, so
	// both answers come from the cache.
	if err := createNamespace(ctx, k8s, 0); err != nil {
		return err
	}
	if err := k8s.Create(ctx, credentials(0)); err != nil {
		return err
	}
	if err := c.RestartWebhook(ctx); err != nil {
		return err
	}
	review := flowRunReview(0)
	var rows []row
	r, err := measure(ctx, c, "empty cluster", review, loadFor, loadC)
	if err != nil {
		return err
	}
	rows = append(rows, r)

	started := time.Now()
	if err := fillCluster(ctx, k8s, sz, fill); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "filled in %s\n", time.Since(started).Round(time.Second))

	for _, mode := range []struct {
		name string
		args []string
	}{{"WatchList on", nil}, {"WatchList off (plain LIST)", []string{"--feature-gates=WatchList=false"}}} {
		if err := c.RestartAPIServer(ctx, mode.args...); err != nil {
			return err
		}
		if err := c.RestartWebhook(ctx); err != nil {
			return err
		}
		r, err := measure(ctx, c, mode.name, review, loadFor, loadC)
		if err != nil {
			return err
		}
		if r.relistPeakKiB, r.relist, err = relist(ctx, c, mode.args); err != nil {
			return err
		}
		rows = append(rows, r)
	}
	printRows(out, rows, sz)

	if pairs > 0 {
		ns := "scale-back-to-back"
		if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"flowauth.io/injection": "enabled"}}}); err != nil {
			return err
		}
		missing, first, err := localcluster.BackToBack(ctx, c.Config, ns, pairs)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "\nBack to back at this size (--missing-secret=deny): %d Secret+pod pairs, %d pods called missing.\n", pairs, missing)
		if first != "" {
			fmt.Fprintf(out, "The first: %s\n", first)
		}
	}
	return nil
}

// measure reads the webhook as it is now: its time to ready (from its last restart), its peak
// RSS so far (the first sync), its RSS after 10 s without work, admission latency under load, and
// the API server's peak.
func measure(ctx context.Context, c *localcluster.Cluster, what string, review []byte, loadFor time.Duration, loadC int) (row, error) {
	r := row{what: what, ready: c.WebhookReadyIn}
	pid := c.WebhookPID()
	r.peakKiB = kib(localcluster.ProcStatus(pid, "VmHWM"))
	time.Sleep(10 * time.Second)
	r.settledKiB = kib(localcluster.ProcStatus(pid, "VmRSS"))
	r.objects = keyCacheObjects(ctx, c.MetricsURL)
	var err error
	r.p50, r.p99, r.answered, r.failed, err = admissionLatency(ctx, c, review, loadFor, loadC)
	if err != nil {
		return r, err
	}
	pids, err := c.ControlPlanePIDs()
	if err != nil {
		return r, err
	}
	r.apiserverPeakKiB = kib(localcluster.ProcStatus(pids["kube-apiserver"], "VmHWM"))
	fmt.Fprintf(os.Stderr, "  %s: ready in %s, peak %d MiB, settled %d MiB, p50 %s p99 %s\n", what, r.ready.Round(10*time.Millisecond), r.peakKiB>>10, r.settledKiB>>10, r.p50, r.p99)
	return r, nil
}

// relist restarts the API server under the running webhook and returns the webhook's peak RSS
// from then until its key cache has listed everything again, and the relist's length in ms.
func relist(ctx context.Context, c *localcluster.Cluster, apiserverArgs []string) (peakKiB, ms int, err error) {
	pid := c.WebhookPID()
	before := metric(ctx, c.MetricsURL, "flowauth_key_cache_lists_total")
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		return 0, 0, fmt.Errorf("resetting the webhook's peak RSS: %w", err)
	}
	started := time.Now()
	if err := c.RestartAPIServer(ctx, apiserverArgs...); err != nil {
		return 0, 0, err
	}
	if before < 0 {
		// A build without the lists metric (an earlier commit's): give it time to list again.
		time.Sleep(30 * time.Second)
		return kib(localcluster.ProcStatus(pid, "VmHWM")), int(time.Since(started).Milliseconds()), nil
	}
	deadline := time.Now().Add(5 * time.Minute)
	for metric(ctx, c.MetricsURL, "flowauth_key_cache_lists_total") < before+2 {
		if time.Now().After(deadline) {
			return 0, 0, fmt.Errorf("the key cache did not list again within 5 minutes of the API server's restart")
		}
		time.Sleep(100 * time.Millisecond)
	}
	return kib(localcluster.ProcStatus(pid, "VmHWM")), int(time.Since(started).Milliseconds()), nil
}

func admissionLatency(ctx context.Context, c *localcluster.Cluster, review []byte, d time.Duration, workers int) (p50, p99 time.Duration, answered, failed int, err error) {
	hc := localcluster.TLSClient(c.WebhookCA())
	var mu sync.Mutex
	var lat []time.Duration
	var firstErr error
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				start := time.Now()
				resp, _, err := localcluster.Review(ctx, hc, c.WebhookURL(), review)
				took := time.Since(start)
				mu.Lock()
				switch {
				case ctx.Err() != nil:
				case err != nil || !resp.Allowed:
					failed++
					if firstErr == nil {
						if err == nil {
							err = fmt.Errorf("not allowed: %v", resp.Result)
						}
						firstErr = fmt.Errorf("admission: %w", err)
					}
				default:
					lat = append(lat, took)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(lat) == 0 {
		return 0, 0, 0, failed, fmt.Errorf("no admission answered: %w", firstErr)
	}
	slices.Sort(lat)
	return lat[len(lat)/2], lat[len(lat)*99/100], len(lat), failed, nil
}

func fillCluster(ctx context.Context, k8s client.Client, sz size, workers int) error {
	helmValue := make([]byte, sz.helmKiB<<10)
	for i := range helmValue {
		helmValue[i] = byte('a' + i%26)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(workers)
	for i := 1; i < sz.namespaces; i++ {
		g.Go(func() error { return createNamespace(gctx, k8s, i) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	g, ctx = errgroup.WithContext(ctx)
	g.SetLimit(workers)
	for i := 1; i < sz.secrets; i++ {
		g.Go(func() error {
			if i < sz.namespaces {
				return k8s.Create(ctx, credentials(i))
			}
			return k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("app-%05d", i), Namespace: namespace(i % sz.namespaces)},
				Data: map[string][]byte{"username": []byte("app"), "password": []byte("not-a-real-password"), "url": []byte("https://example.invalid")}})
		})
	}
	for i := range sz.helm {
		g.Go(func() error {
			return k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("sh.helm.release.v1.app-%d.v1", i), Namespace: namespace(i % sz.namespaces),
				Labels: map[string]string{"owner": "helm", "name": fmt.Sprintf("app-%d", i)}}, Type: "helm.sh/release.v1", Data: map[string][]byte{"release": helmValue}})
		})
	}
	for i := range sz.configMaps {
		g.Go(func() error {
			return k8s.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%05d", i), Namespace: namespace(i % sz.namespaces)},
				Data: map[string]string{"LOG_LEVEL": "info", "REGION": "eu-west-1", "settings.yaml": "a: 1\n"}})
		})
	}
	// Key names of 60 characters, each ConfigMap its own (the index interns key sets that are
	// alike, which would hide the cost): a ConfigMap's size counts its keys, so each holds about
	// manyKeysKiB.
	for i := range sz.manyKeys {
		g.Go(func() error {
			keys := map[string]string{}
			for k := 0; len(keys)*60 < sz.manyKeysKiB<<10-60; k++ {
				keys[fmt.Sprintf("cm%03d-config-file-%042d", i, k)] = ""
			}
			return k8s.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("many-keys-%03d", i), Namespace: namespace(i % sz.namespaces)}, Data: keys})
		})
	}
	return g.Wait()
}

func namespace(i int) string { return fmt.Sprintf("scale-%04d", i) }

func createNamespace(ctx context.Context, k8s client.Client, i int) error {
	return k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace(i), Labels: map[string]string{"flowauth.io/injection": "enabled"}}})
}

// credentials is namespace i's AWS_CREDENTIALS Secret.
func credentials(i int) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "aws-credentials", Namespace: namespace(i)},
		Data: map[string][]byte{"ACCESS_KEY": []byte("AKIAEXAMPLE"), "SECRET_ACCESS_KEY": []byte("not-a-real-key"), "SESSION_TOKEN": []byte("none")}}
}

func flowRunReview(i int) []byte {
	return fmt.Appendf(nil, `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"scale","kind":{"group":"","version":"v1","kind":"Pod"},
"resource":{"group":"","version":"v1","resource":"pods"},"operation":"CREATE","namespace":%q,
"object":{"apiVersion":"v1","kind":"Pod","metadata":{"generateName":"flow-run-","namespace":%q,"annotations":{"flowauth.io/secrets":"AWS_CREDENTIALS"}},
"spec":{"containers":[{"name":"flow","image":"prefecthq/prefect:3-python3.12"}]}}}}`, namespace(i), namespace(i))
}

func kib(status string) int {
	n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(status), " kB"))
	return n
}

// metric reads one unlabelled sample of the webhook's metrics; -1 if absent.
func metric(ctx context.Context, url, name string) float64 {
	samples, err := localcluster.MetricSamples(ctx, url)
	if v, ok := samples[name]; ok && err == nil {
		return v
	}
	return -1
}

func keyCacheObjects(ctx context.Context, url string) string {
	samples, _ := localcluster.MetricSamples(ctx, url)
	var out []string
	for _, kind := range []string{"ConfigMap", "Secret"} {
		if v, ok := samples[`flowauth_key_cache_objects{kind="`+kind+`"}`]; ok {
			out = append(out, fmt.Sprintf("%s %.0f", kind, v))
		}
	}
	return strings.Join(out, ", ")
}

func printRows(out io.Writer, rows []row, sz size) {
	empty := rows[0]
	fmt.Fprintf(out, "\n| API server | webhook ready | peak RSS | settled RSS | settled per watched object | relist peak (relist took) | admission p50 | p99 | p99 / empty | API server peak | key cache |\n")
	fmt.Fprintf(out, "|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		perObject, relist := "", ""
		if r.what != empty.what {
			perObject = fmt.Sprintf("%.0f B", float64(r.settledKiB-empty.settledKiB)*1024/float64(sz.watched()))
			relist = fmt.Sprintf("%.1f MiB (%.1f s)", float64(r.relistPeakKiB)/1024, float64(r.relist)/1000)
		}
		fmt.Fprintf(out, "| %s | %.1f s | %.1f MiB | %.1f MiB | %s | %s | %s | %s | %.2f | %.0f MiB | %s |\n", r.what, r.ready.Seconds(),
			float64(r.peakKiB)/1024, float64(r.settledKiB)/1024, perObject, relist, r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond),
			float64(r.p99)/float64(empty.p99), float64(r.apiserverPeakKiB)/1024, r.objects)
	}
	for _, r := range rows {
		if r.failed > 0 {
			fmt.Fprintf(out, "\n%s: %d admissions failed\n", r.what, r.failed)
		}
	}
}
