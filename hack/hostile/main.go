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
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/flowauth/flowauth/test/localcluster"
)

// The targets of issue 22, item 1.
const (
	maxAnswerTime  = time.Second
	maxAnswerBytes = 64 << 10
	maxPeakGrowth  = 16 << 20
	maxBody        = 3 << 20
	concurrent     = 8
)

func main() {
	bin := flag.String("webhook-bin", "", "webhook binary to measure (default: build ./cmd/webhook)")
	reportOnly := flag.Bool("report-only", false, "print the table without failing on a target")
	only := flag.String("case", "", "run only the cases whose name contains this")
	flag.Parse()
	if err := run(*bin, *reportOnly, *only); err != nil {
		fmt.Fprintln(os.Stderr, "hostile:", err)
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
}

func run(bin string, reportOnly bool, only string) error {
	tmp, err := os.MkdirTemp("", "flowauth-hostile-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	if bin == "" {
		bin = filepath.Join(tmp, "webhook")
		build := exec.CommandContext(context.Background(), "go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./cmd/webhook")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			return fmt.Errorf("building the webhook: %w\n%s", err, out)
		}
	}
	ca, err := localcluster.NewCA("flowauth-hostile-ca")
	if err != nil {
		return err
	}
	certs := filepath.Join(tmp, "certs")
	if err := os.Mkdir(certs, 0o700); err != nil {
		return err
	}
	if err := ca.WriteServing(certs, []net.IP{net.ParseIP("127.0.0.1")}); err != nil {
		return err
	}
	addr, err := localcluster.FreeAddr()
	if err != nil {
		return err
	}
	_, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// As the chart runs it without a cluster connection: the lists a pod carries are the same.
	wh := exec.CommandContext(ctx, bin, "--cluster-connection=false", "--namespace-defaults=false", "--port="+port, "--cert-dir="+certs,
		"--metrics-bind-address=0", "--health-probe-bind-address=0", "--log-level=error")
	wh.Stderr = os.Stderr
	if err := wh.Start(); err != nil {
		return err
	}
	defer func() { _ = wh.Process.Kill() }()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.PEM)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool}, MaxIdleConnsPerHost: concurrent, ForceAttemptHTTP2: false,
	}}
	url := "https://" + addr
	if err := waitServing(client, url); err != nil {
		return err
	}
	// At rest: after a few ordinary flow runs, as in a cluster.
	ordinary := review("CREATE", "Pod", pod(map[string]string{"flowauth.io/secrets": "AWS_CREDENTIALS GCP_CREDENTIALS"}, containers(1)), nil)
	for range 50 {
		if _, _, err := send(client, url+"/mutate-v1-pod", ordinary); err != nil {
			return err
		}
	}
	pid := wh.Process.Pid
	fmt.Printf("webhook %s, pid %d, RSS at rest %s\n\n", bin, pid, localcluster.ProcStatus(pid, "VmRSS"))

	var results []outcome
	for _, c := range cases() {
		if only != "" && !strings.Contains(c.name, only) {
			continue
		}
		if len(c.body) > maxBody {
			return fmt.Errorf("case %s: body of %d bytes is over the API server's 3 MiB", c.name, len(c.body))
		}
		o, err := measure(client, url+c.path, pid, c)
		if err != nil {
			return fmt.Errorf("case %s: %w", c.name, err)
		}
		results = append(results, o)
	}
	fmt.Printf("%-28s %8s %9s %9s %9s %5s %9s  %s\n", "case", "body KiB", "alone ms", "8 at once", "answer B", "code", "peak MiB", "answer")
	broken := 0
	for _, o := range results {
		fmt.Printf("%-28s %8d %9.1f %9.1f %9d %5d %9.1f  %s\n", o.name, o.body>>10, ms(o.alone), ms(o.together), o.answer, o.code, float64(o.peakGrowth)/(1<<20), o.message)
		for _, b := range o.broken {
			fmt.Printf("    BROKEN: %s\n", b)
			broken++
		}
	}
	if broken > 0 && !reportOnly {
		return fmt.Errorf("%d targets broken", broken)
	}
	return nil
}

type hostileCase struct {
	name, path string
	body       []byte
}

// measure sends the case alone (the slowest of three), then 8 at once, with the peak RSS reset
// before.
func measure(client *http.Client, url string, pid int, c hostileCase) (outcome, error) {
	o := outcome{name: c.name, body: len(c.body)}
	rest := kib(localcluster.ProcStatus(pid, "VmRSS"))
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		return o, fmt.Errorf("resetting the peak RSS (needs the same user, or root): %w", err)
	}
	for range 3 {
		start := time.Now()
		answer, resp, err := send(client, url, c.body)
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
			if _, _, err := send(client, url, c.body); err != nil {
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
	o.peakGrowth = (kib(localcluster.ProcStatus(pid, "VmHWM")) - rest) << 10
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
		if len(msg) > 70 {
			msg = msg[:70] + "..."
		}
		return fmt.Sprintf("refused: %s", msg)
	}
	return fmt.Sprintf("allowed, patch %d B, %d warnings", len(r.Patch), len(r.Warnings))
}

func waitServing(client *http.Client, url string) error {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, url+"/healthz", nil)
		if resp, err := client.Do(req); err == nil {
			_ = resp.Body.Close()
			return nil
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
