package localcluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/client-go/util/cert"

	"github.com/flowauth/flowauth/pkg/mutate"
)

// FlowRunReview is the load harness's flow-run AdmissionReview (pkg/admission/testdata/admload).
func FlowRunReview(t testing.TB, repoRoot string) []byte {
	t.Helper()
	body, err := os.ReadFile(filepath.Join(repoRoot, "pkg", "admission", "testdata", "admload", "flowrun.json"))
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// Review posts one AdmissionReview as the API server does and returns the decoded answer and its
// HTTP status.
func Review(ctx context.Context, client *http.Client, url string, body []byte) (*admissionv1.AdmissionResponse, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	var rev admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&rev); err != nil {
		return nil, resp.StatusCode, fmt.Errorf("the webhook's answer: %w", err)
	}
	return rev.Response, resp.StatusCode, nil
}

// Admit posts one AdmissionReview as the API server does and checks that the answer is an
// allowed review, with a patch when the body is a flow run's.
func Admit(ctx context.Context, client *http.Client, url string, body []byte) error {
	answer, status, err := Review(ctx, client, url, body)
	if err != nil {
		return err
	}
	flowRun := mutate.MayBeFlowRun(body) // the harness's bodies: flow runs exactly when this says so
	if status != http.StatusOK || answer == nil || !answer.Allowed || flowRun != (len(answer.Patch) > 0) {
		return fmt.Errorf("unexpected answer: HTTP %d, %+v", status, answer)
	}
	return nil
}

// TLSClient is an HTTPS client that trusts only caPEM, as the API server trusts a caBundle.
func TLSClient(caPEM []byte) *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
}

// MustKubectl runs the real kubectl against the cluster (bounded by two minutes) and returns its
// stdout; a failure fails the test with kubectl's stderr.
func (c *Cluster) MustKubectl(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, errOut, err := c.Kubectl(ctx, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, errOut)
	}
	return out
}

// ProcStatus reads one field of /proc/<pid>/status (e.g. VmRSS, VmHWM), "unknown" if it cannot.
func ProcStatus(pid int, field string) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// Load sends one AdmissionReview over and over from several goroutines until Stop, counting
// allowed answers and failures.
type Load struct {
	ok, failed atomic.Int64
	first      atomic.Value
	stop       context.CancelFunc
	wg         sync.WaitGroup
}

// StartLoad starts workers goroutines posting body to url, each pausing between requests.
func StartLoad(ctx context.Context, workers int, client *http.Client, url string, body []byte, pause time.Duration) *Load {
	l := &Load{}
	ctx, l.stop = context.WithCancel(ctx)
	for range workers {
		l.wg.Go(func() {
			for ctx.Err() == nil {
				if err := Admit(ctx, client, url, body); err != nil {
					if ctx.Err() == nil {
						l.failed.Add(1)
						l.first.CompareAndSwap(nil, time.Now().Format("15:04:05.000")+" "+err.Error())
					}
				} else {
					l.ok.Add(1)
				}
				time.Sleep(pause)
			}
		})
	}
	return l
}

// Answered is how many admissions were answered so far.
func (l *Load) Answered() int64 { return l.ok.Load() }

// Stop ends the load and returns the answered and failed counts and the first failure.
func (l *Load) Stop() (answered, failed int64, first any) {
	l.stop()
	l.wg.Wait()
	return l.ok.Load(), l.failed.Load(), l.first.Load()
}

// ServedCertificates makes cfg record each distinct certificate servers present; the returned
// function counts them.
func ServedCertificates(cfg *tls.Config) func() int {
	var mu sync.Mutex
	seen := map[string]bool{}
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		mu.Lock()
		defer mu.Unlock()
		seen[string(cs.PeerCertificates[0].Signature)] = true
		return nil
	}
	return func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(seen)
	}
}

// ServingCert writes a fresh self-signed serving certificate for localhost and 127.0.0.1 into
// dir, laid out as a projected Secret, and returns the certificate's PEM (to trust it).
func ServingCert(dir string) ([]byte, error) {
	crt, key, err := cert.GenerateSelfSignedCertKey("localhost", []net.IP{net.ParseIP("127.0.0.1")}, nil)
	if err != nil {
		return nil, err
	}
	return crt, Project(dir, map[string][]byte{"tls.crt": crt, "tls.key": key})
}

// Eventually calls ok until it reports done, failing the test with what it last saw when
// timeout passes first.
func Eventually(t testing.TB, timeout time.Duration, what string, ok func() (done bool, lastSeen string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		done, last := ok()
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never happened; last seen:\n%s", what, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// MetricSamples reads a Prometheus text endpoint into sample → value, each sample written as
// the endpoint writes it: `name` or `name{label="value",...}`.
func MetricSamples(ctx context.Context, url string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	samples := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		i := strings.LastIndexByte(line, ' ')
		if line == "" || strings.HasPrefix(line, "#") || i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("metric line %q: %w", line, err)
		}
		samples[line[:i]] = v
	}
	return samples, nil
}
