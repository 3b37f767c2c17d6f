// Command hostile is `make hostile`: it sends the webhook binary the AdmissionReviews a tenant
// who can create pods (or fill a Prefect worker's job variables) in one opted-in namespace could
// make the API server forward, each at most 3 MiB, and measures what each costs the webhook:
// the answer's time (alone, and the slowest of 8 sent at once), the answer's size, and how far
// the webhook's peak RSS (VmHWM, reset before each case) rises above its RSS at rest. It fails
// when a case breaks a target: an answer within 1 s and of at most 64 KiB, a peak at most 16 MiB
// above rest. -webhook-bin measures another build (an earlier commit's) with -report-only.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flowauth/flowauth/internal/results"
	"github.com/flowauth/flowauth/test/localcluster"
)

// The targets of issue 22, item 1.
const (
	maxAnswerTime  = time.Second
	maxAnswerBytes = 64 << 10
	maxPeakGrowth  = 16 << 20
	maxBody        = 3 << 20
	concurrent     = 8
	// maxLogLine: issue 29's bound on the longest log line a request may cause.
	maxLogLine = 4 << 10
	// answerShown: the report shows a refusal's message up to this many bytes.
	answerShown = 70
)

func main() {
	bin := flag.String("webhook-bin", "", "webhook binary to measure (default: build ./cmd/webhook)")
	reportOnly := flag.Bool("report-only", false, "print the table without failing on a target")
	only := flag.String("case", "", "run only the cases whose name contains this")
	mode := flag.String("mode", "both", "standalone (no cluster connection, as clusterConnection: false), cluster (against the local control plane: namespaces, key lookup, Events), or both")
	page := flag.String("results", "", "write the report into this page's \"make hostile\" section (make hostile: docs/performance.md)")
	flag.Parse()
	if *mode != "both" && *mode != "standalone" && *mode != "cluster" {
		fmt.Fprintln(os.Stderr, "hostile: -mode is one of both, standalone, cluster")
		os.Exit(2)
	}
	report := results.New("hostile")
	broken, err := run(report.Out(), *bin, *only, *mode)
	if err != nil {
		fmt.Fprintln(os.Stderr, "hostile:", err)
		os.Exit(1)
	}
	// A run that broke a target is a result too: it is written before the run fails.
	if err := report.Write(*page); err != nil {
		fmt.Fprintln(os.Stderr, "hostile:", err)
		os.Exit(1)
	}
	if broken > 0 && !*reportOnly {
		fmt.Fprintf(os.Stderr, "hostile: %d targets broken\n", broken)
		os.Exit(1)
	}
}

type outcome struct {
	name            string
	body            int
	alone, together time.Duration
	answer          int
	code            int
	allowed         bool
	peakGrowth      int64
	message         string
	broken          []string
	// events and apiRequests: Events stored and the webhook's API requests (-1 without a
	// cluster); longestLog: the longest line the webhook logged.
	events, apiRequests, longestLog int
}

func run(out io.Writer, bin, only, mode string) (int, error) {
	tmp, err := os.MkdirTemp("", "flowauth-hostile-")
	if err != nil {
		return 0, err
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	if bin == "" {
		bin = filepath.Join(tmp, "webhook")
		build := exec.CommandContext(context.Background(), "go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./cmd/webhook")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if built, err := build.CombinedOutput(); err != nil {
			return 0, fmt.Errorf("building the webhook: %w\n%s", err, built)
		}
	}
	ca, err := localcluster.NewCA("flowauth-hostile-ca")
	if err != nil {
		return 0, err
	}
	certs := filepath.Join(tmp, "certs")
	if err := os.Mkdir(certs, 0o700); err != nil {
		return 0, err
	}
	if err := ca.WriteServing(certs, []net.IP{net.ParseIP("127.0.0.1")}); err != nil {
		return 0, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.PEM)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool}, MaxIdleConnsPerHost: concurrent, ForceAttemptHTTP2: false,
	}}
	broken := 0
	if mode == "both" || mode == "standalone" {
		// As the chart runs it with clusterConnection: false: the lists a pod carries are the
		// same. The environment, not a flag, says so: builds from before the flag ignore it.
		w := webhookRun{out: out, bin: bin, certs: certs, client: client, env: []string{"FLOWAUTH_CLUSTER_CONNECTION=false"}, args: []string{"--namespace-defaults=false"}}
		n, err := w.run("without a cluster connection", cases(), only)
		if err != nil {
			return 0, err
		}
		broken += n
	}
	if mode == "both" || mode == "cluster" {
		n, err := runConnected(out, tmp, bin, certs, client, only)
		if err != nil {
			return 0, err
		}
		broken += n
	}
	if broken > 0 {
		fmt.Fprintf(out, "**%d targets broken.**\n", broken)
	}
	return broken, nil
}

// runConnected runs the webhook as the chart does by default, against the local control plane:
// namespaces read (the served ones labelled flowauth.io/injection=enabled), key lookup on, Events
// recorded. Every case runs again, and the cases only a connection makes possible.
func runConnected(out io.Writer, tmp, bin, certs string, client *http.Client, only string) (int, error) {
	ctx := context.Background()
	root, err := filepath.Abs(".")
	if err != nil {
		return 0, err
	}
	c, err := localcluster.Start(ctx, localcluster.Options{RepoRoot: root, WorkDir: tmp, WebhookBin: bin, NoWebhook: true})
	if err != nil {
		return 0, err
	}
	defer func() { _ = c.Stop() }()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "flows", Labels: map[string]string{"flowauth.io/injection": "enabled"}}}
	if err := c.Client.Create(ctx, ns); err != nil {
		return 0, err
	}
	w := webhookRun{out: out, bin: bin, certs: certs, client: client, cluster: c, args: []string{
		"--kubeconfig=" + c.Kubeconfig, "--namespace-selector=flowauth.io/injection=enabled", "--secret-lookup=keys",
	}}
	return w.run("with a cluster connection (namespaces read, key lookup, Events)", append(cases(), connectedCases(c)...), only)
}

// webhookRun is one run of the webhook binary and the cases sent to it.
type webhookRun struct {
	out        io.Writer
	bin, certs string
	args, env  []string
	client     *http.Client
	cluster    *localcluster.Cluster
}

func (w webhookRun) run(title string, cs []hostileCase, only string) (int, error) {
	addr, err := localcluster.FreeAddr()
	if err != nil {
		return 0, err
	}
	metricsAddr, err := localcluster.FreeAddr()
	if err != nil {
		return 0, err
	}
	_, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Logged at info, as the chart runs it: the denials' lines are measured.
	logs := &lineMeter{}
	wh := exec.CommandContext(ctx, w.bin, append([]string{"--port=" + port, "--cert-dir=" + w.certs,
		"--metrics-bind-address=" + metricsAddr, "--health-probe-bind-address=0", "--log-level=info"}, w.args...)...)
	wh.Env = append(os.Environ(), w.env...)
	wh.Stderr, wh.Stdout = logs, logs
	if err := wh.Start(); err != nil {
		return 0, err
	}
	defer func() { _ = wh.Process.Kill(); _ = wh.Wait() }()
	url := "https://" + addr
	if err := waitServing(w.client, url, "http://"+metricsAddr+"/metrics"); err != nil {
		return 0, fmt.Errorf("%w; its log:\n%s", err, logs.tail())
	}
	// At rest: after a few ordinary flow runs, as in a cluster.
	ordinary := review("CREATE", "Pod", pod(map[string]string{"flowauth.io/secrets": "AWS_CREDENTIALS GCP_CREDENTIALS"}, containers(1)), nil)
	for range 50 {
		if _, _, err := send(w.client, url+"/mutate-v1-pod", ordinary); err != nil {
			return 0, err
		}
	}
	pid := wh.Process.Pid
	fmt.Fprintf(w.out, "### %s\n\nRSS at rest (after 50 ordinary flow runs): %s, of which the binary's own pages (RssFile, mapped from the executable) %s. Each case is sent alone, then %d at once; peak is VmHWM above rest; Events stored, the webhook's API requests (- without a cluster) and its longest log line in bytes; the answer's message, cut at %d bytes.\n\n",
		title, localcluster.ProcStatus(pid, "VmRSS"), localcluster.ProcStatus(pid, "RssFile"), concurrent, answerShown)
	m := meters{metrics: "http://" + metricsAddr + "/metrics", logs: logs, cluster: w.cluster}
	var outcomes []outcome
	for _, c := range cs {
		if only != "" && !strings.Contains(c.name, only) {
			continue
		}
		o, err := measure(w.client, url, pid, c, m)
		if err != nil {
			return 0, fmt.Errorf("case %s: %w", c.name, err)
		}
		outcomes = append(outcomes, o)
	}
	fmt.Fprintf(w.out, "| case | body KiB | alone ms | %d at once ms | answer B | code | peak MiB | Events | API requests | log line B | answer |\n|---|---|---|---|---|---|---|---|---|---|---|\n", concurrent)
	broken := 0
	var brokenLines []string
	for _, o := range outcomes {
		fmt.Fprintf(w.out, "| %s | %d | %.1f | %.1f | %d | %d | %.1f | %s | %s | %d | %s |\n", o.name, o.body>>10, ms(o.alone), ms(o.together), o.answer, o.code, float64(o.peakGrowth)/(1<<20),
			count(o.events), count(o.apiRequests), o.longestLog, strings.ReplaceAll(o.message, "|", "\\|"))
		for _, b := range o.broken {
			brokenLines = append(brokenLines, fmt.Sprintf("- BROKEN, %s: %s\n", o.name, b))
			broken++
		}
	}
	fmt.Fprintf(w.out, "\n%s", strings.Join(brokenLines, ""))
	return broken, nil
}

func count(n int) string {
	if n < 0 {
		return "-"
	}
	return strconv.Itoa(n)
}

type hostileCase struct {
	name, path string
	body       []byte
	// noEvents: the case may store no Event; maxRequests, when set, bounds the webhook's API
	// requests (with a cluster).
	noEvents    bool
	maxRequests int
	// n > 0: n reviews, bodyN(i) each, sent 8 at a time; every answer is held to the targets.
	n     int
	bodyN func(i int) []byte
	// setup, when set, makes what the webhook's watches read (no review): the peak is measured
	// while the webhook takes it in, then one ordinary review is timed.
	setup func() error
	// setupObjects: the webhook's key cache holds at least this many ConfigMaps once the setup is
	// taken in.
	setupObjects int
}

// meters read what a case cost beyond its answers: Events stored, the webhook's requests to the
// API server, its longest log line.
type meters struct {
	metrics string
	logs    *lineMeter
	cluster *localcluster.Cluster
}

// events is how many Events the namespace flows holds; -1 without a cluster.
func (m meters) events() (int, error) {
	if m.cluster == nil {
		return -1, nil
	}
	var list eventsv1.EventList
	if err := m.cluster.Client.List(context.Background(), &list, client.InNamespace("flows")); err != nil {
		return 0, err
	}
	return len(list.Items), nil
}

// apiRequests is the webhook's client-go request count (rest_client_requests_total, every verb
// and code); -1 without a cluster.
func (m meters) apiRequests() (int, error) {
	if m.cluster == nil {
		return -1, nil
	}
	samples, err := localcluster.MetricSamples(context.Background(), m.metrics)
	if err != nil {
		return 0, err
	}
	total := 0.0
	for sample, v := range samples {
		if strings.HasPrefix(sample, "rest_client_requests_total{") {
			total += v
		}
	}
	return int(total), nil
}

// gauge reads one series of the webhook's metrics (its name and labels as exposed).
func (m meters) gauge(series string) (int, error) {
	samples, err := localcluster.MetricSamples(context.Background(), m.metrics)
	return int(samples[series]), err
}

// lineMeter is the webhook's output: it keeps the longest line since reset and the last lines.
type lineMeter struct {
	mu      sync.Mutex
	current int
	longest int
	last    []byte
}

func (l *lineMeter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, b := range p {
		if b == '\n' {
			l.longest = max(l.longest, l.current)
			l.current = 0
			continue
		}
		l.current++
	}
	l.last = append(l.last, p...)
	if len(l.last) > 8<<10 {
		l.last = l.last[len(l.last)-4<<10:]
	}
	return len(p), nil
}

func (l *lineMeter) reset() {
	l.mu.Lock()
	l.longest, l.current = 0, 0
	l.mu.Unlock()
}

func (l *lineMeter) max() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return max(l.longest, l.current)
}

func (l *lineMeter) tail() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.last)
}

// measure sends the case alone (the slowest of three), then 8 at once, with the peak RSS reset
// before; or its n reviews 8 at a time; or makes what it sets up. Then it reads the meters.
func measure(hc *http.Client, url string, pid int, c hostileCase, m meters) (outcome, error) {
	o := outcome{name: c.name, body: len(c.body)}
	if c.bodyN != nil {
		o.body = len(c.bodyN(0))
	}
	eventsBefore, err := m.events()
	if err != nil {
		return o, err
	}
	requestsBefore, err := m.apiRequests()
	if err != nil {
		return o, err
	}
	m.logs.reset()
	rest := kib(localcluster.ProcStatus(pid, "VmRSS"))
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		return o, fmt.Errorf("resetting the peak RSS (needs the same user, or root): %w", err)
	}
	answered := func(answer []byte, resp reviewAnswer, took time.Duration) {
		o.alone, o.together = max(o.alone, took), max(o.together, took)
		o.answer, o.code = max(o.answer, len(answer)), max(o.code, resp.Response.Result.Code)
		o.allowed = resp.Response.Allowed
		o.message = summary(resp)
	}
	switch {
	case c.setup != nil:
		if err := c.setup(); err != nil {
			return o, err
		}
		deadline := time.Now().Add(5 * time.Minute)
		for {
			held, err := m.gauge(`flowauth_key_cache_objects{kind="ConfigMap"}`)
			if err != nil {
				return o, err
			}
			if held >= c.setupObjects {
				break
			}
			if time.Now().After(deadline) {
				return o, fmt.Errorf("the key cache holds %d ConfigMaps after 5 minutes, want %d", held, c.setupObjects)
			}
			time.Sleep(500 * time.Millisecond)
		}
		ordinary := review("CREATE", "Pod", pod(map[string]string{"flowauth.io/secrets": "AWS_CREDENTIALS"}, containers(1)), nil)
		start := time.Now()
		answer, resp, err := send(hc, url+"/mutate-v1-pod", ordinary)
		if err != nil {
			return o, err
		}
		answered(answer, resp, time.Since(start))
	case c.n > 0:
		var mu sync.Mutex
		var times []time.Duration
		work := make(chan int)
		g := errgroup.Group{}
		for range concurrent {
			g.Go(func() error {
				for i := range work {
					body := c.bodyN(i)
					start := time.Now()
					answer, resp, err := send(hc, url+c.path, body)
					if err != nil {
						return err
					}
					took := time.Since(start)
					mu.Lock()
					answered(answer, resp, took)
					times = append(times, took)
					mu.Unlock()
				}
				return nil
			})
		}
		for i := range c.n {
			work <- i
		}
		close(work)
		if err := g.Wait(); err != nil {
			return o, err
		}
		slices.Sort(times)
		o.message = fmt.Sprintf("p50 %.0f ms, p99 %.0f ms; %s", ms(times[len(times)/2]), ms(times[len(times)*99/100]), o.message)
	default:
		for range 3 {
			start := time.Now()
			answer, resp, err := send(hc, url+c.path, c.body)
			if err != nil {
				return o, err
			}
			o.alone = max(o.alone, time.Since(start))
			o.answer, o.code = len(answer), resp.Response.Result.Code
			o.allowed = resp.Response.Allowed
			o.message = summary(resp)
		}
		var wg sync.WaitGroup
		errs := make(chan error, concurrent)
		times := make(chan time.Duration, concurrent)
		for range concurrent {
			wg.Go(func() {
				start := time.Now()
				if _, _, err := send(hc, url+c.path, c.body); err != nil {
					errs <- err
				}
				times <- time.Since(start)
			})
		}
		wg.Wait()
		close(errs)
		close(times)
		for err := range errs {
			return o, err
		}
		for d := range times {
			o.together = max(o.together, d)
		}
	}
	// Events are sent by client-go's broadcaster after the answer: give them a moment.
	if m.cluster != nil {
		time.Sleep(2 * time.Second)
	}
	o.peakGrowth = (kib(localcluster.ProcStatus(pid, "VmHWM")) - rest) << 10
	eventsAfter, err := m.events()
	if err != nil {
		return o, err
	}
	requestsAfter, err := m.apiRequests()
	if err != nil {
		return o, err
	}
	o.events, o.apiRequests, o.longestLog = eventsAfter-eventsBefore, requestsAfter-requestsBefore, m.logs.max()
	if eventsBefore < 0 {
		o.events, o.apiRequests = -1, -1
	}
	if o.alone > maxAnswerTime || o.together > maxAnswerTime {
		o.broken = append(o.broken, fmt.Sprintf("answered in %.0f ms alone, %.0f ms 8 at once (target 1 s)", ms(o.alone), ms(o.together)))
	}
	if o.answer > maxAnswerBytes {
		o.broken = append(o.broken, fmt.Sprintf("answer of %d KiB (target 64 KiB)", o.answer>>10))
	}
	if o.peakGrowth > maxPeakGrowth {
		o.broken = append(o.broken, fmt.Sprintf("peak RSS %.1f MiB above rest (target 16 MiB)", float64(o.peakGrowth)/(1<<20)))
	}
	if o.code >= 500 {
		o.broken = append(o.broken, fmt.Sprintf("answered %d", o.code))
	}
	if o.longestLog > maxLogLine {
		o.broken = append(o.broken, fmt.Sprintf("a log line of %d KiB (target 4 KiB)", o.longestLog>>10))
	}
	if c.noEvents && o.events > 0 {
		o.broken = append(o.broken, fmt.Sprintf("%d Events stored (target none)", o.events))
	}
	if c.maxRequests > 0 && o.apiRequests > c.maxRequests {
		o.broken = append(o.broken, fmt.Sprintf("%d API requests (target %d)", o.apiRequests, c.maxRequests))
	}
	return o, nil
}

type reviewAnswer struct {
	Response struct {
		Allowed  bool     `json:"allowed"`
		Warnings []string `json:"warnings"`
		Patch    []byte   `json:"patch"`
		Result   struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"status"`
	} `json:"response"`
}

func send(client *http.Client, url string, body []byte) ([]byte, reviewAnswer, error) {
	var answer reviewAnswer
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, answer, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, answer, err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, answer, err
	}
	if resp.StatusCode != http.StatusOK {
		answer.Response.Result.Code = resp.StatusCode
		return b, answer, nil
	}
	if err := json.Unmarshal(b, &answer); err != nil {
		return nil, answer, fmt.Errorf("answer is not a review: %w", err)
	}
	if answer.Response.Result.Code == 0 {
		answer.Response.Result.Code = http.StatusOK
	}
	return b, answer, nil
}

// summary says what the answer was in a few words: allowed with a patch of N bytes and W
// warnings, or the start of the refusal.
func summary(a reviewAnswer) string {
	r := a.Response
	if !r.Allowed {
		msg := r.Result.Message
		if len(msg) > answerShown {
			msg = msg[:answerShown] + "..."
		}
		return fmt.Sprintf("refused: %s", msg)
	}
	return fmt.Sprintf("allowed, patch %d B, %d warnings", len(r.Patch), len(r.Warnings))
}

// waitServing waits for the webhook's TLS port and its metrics (which, with a cluster
// connection, come up once the manager has started).
func waitServing(client *http.Client, url, metrics string) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, url+"/healthz", nil)
		if resp, err := client.Do(req); err == nil {
			_ = resp.Body.Close()
			req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, metrics, nil)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				_ = resp.Body.Close()
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("the webhook did not serve at %s", url)
}

func kib(v string) int64 {
	n, _ := strconv.ParseInt(strings.TrimSuffix(v, " kB"), 10, 64)
	return n
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
