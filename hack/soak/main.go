// Command soak runs the webhook binary (no cluster) under mixed load at a fixed rate for a long
// time while its --secret-map file is rewritten every few seconds (valid and, now and then,
// invalid versions), then reports failed admissions (must be zero) and RSS at the start and end
// (must not grow beyond noise). `make soak` runs it for 10 minutes.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flowauth/flowauth/test/localcluster"
)

var mapVersions = []string{
	"apiVersion: flowauth.io/v1alpha1\nkind: SecretMap\nsecrets:\n  DBT_CLOUD:\n    shape: dict\n    keys: [{name: ACCOUNT_ID}, {name: TOKEN}]\n",
	"apiVersion: flowauth.io/v1alpha1\nkind: SecretMap\nsecrets:\n  DBT_CLOUD:\n    shape: string\n    keys: [{name: TOKEN}]\n    native: {env: [{name: DBT_CLOUD_API_TOKEN, key: TOKEN}]}\n",
	"apiVersion: flowauth.io/v1alpha1\nkind: SecretMap\nsecrets:\n  bad__name: {}\n", // rejected: the old map stays
}

func main() {
	dur := flag.Duration("d", 10*time.Minute, "how long to run")
	rate := flag.Int("rate", 200, "admissions per second")
	reload := flag.Duration("reload", 5*time.Second, "how often the secret map is rewritten")
	flag.Parse()
	if err := run(*dur, *rate, *reload); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

func run(dur time.Duration, rate int, reload time.Duration) error {
	tmp, err := os.MkdirTemp("", "flowauth-soak-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	bin := filepath.Join(tmp, "webhook")
	if out, err := exec.CommandContext(context.Background(), "go", "build", "-o", bin, "./cmd/webhook").CombinedOutput(); err != nil {
		return fmt.Errorf("building the webhook: %w\n%s", err, out)
	}
	certDir := filepath.Join(tmp, "certs")
	if err := os.Mkdir(certDir, 0o700); err != nil {
		return err
	}
	crt, err := localcluster.ServingCert(certDir)
	if err != nil {
		return err
	}
	mapFile := filepath.Join(tmp, "secret-map.yaml")
	if err := os.WriteFile(mapFile, []byte(mapVersions[0]), 0o600); err != nil {
		return err
	}
	addr, err := localcluster.FreeAddr()
	if err != nil {
		return err
	}
	metricsAddr, err := localcluster.FreeAddr()
	if err != nil {
		return err
	}
	_, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wh := exec.CommandContext(ctx, bin, "--cluster-connection=false", "--namespace-defaults=false", "--port="+port, "--cert-dir="+certDir, "--secret-map="+mapFile,
		"--metrics-bind-address="+metricsAddr, "--health-probe-bind-address=0", "--log-level=error")
	if err := wh.Start(); err != nil {
		return err
	}
	defer func() { _ = wh.Process.Kill() }()
	time.Sleep(time.Second)

	var bodies [][]byte
	for _, p := range []string{"plain", "small", "flowrun", "large"} {
		b, err := os.ReadFile(filepath.Join("pkg", "admission", "testdata", "admload", p+".json"))
		if err != nil {
			return err
		}
		bodies = append(bodies, b)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(crt)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64,
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}}}
	url := "https://" + addr + "/mutate-v1-pod"

	var sent, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	reloads := time.NewTicker(reload)
	defer reloads.Stop()
	start, warm := time.Now(), time.Now().Add(30*time.Second)
	var rssStart string
	for i := 0; time.Since(start) < dur; {
		select {
		case <-tick.C:
			body := bodies[i%len(bodies)]
			i++
			wg.Go(func() {
				sent.Add(1)
				if err := localcluster.Admit(ctx, client, url, body); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			})
		case <-reloads.C:
			v := mapVersions[int(time.Since(start)/reload)%len(mapVersions)]
			if err := os.WriteFile(mapFile+".tmp", []byte(v), 0o600); err == nil {
				_ = os.Rename(mapFile+".tmp", mapFile)
			}
		}
		if rssStart == "" && time.Now().After(warm) {
			rssStart = localcluster.ProcStatus(wh.Process.Pid, "VmRSS")
		}
	}
	wg.Wait()
	rssEnd, hwm := localcluster.ProcStatus(wh.Process.Pid, "VmRSS"), localcluster.ProcStatus(wh.Process.Pid, "VmHWM")
	fmt.Printf("soak: %s at %d/s (plain, small, flowrun, large in turn), secret map rewritten every %s\n", dur, rate, reload)
	fmt.Printf("admissions sent %d, failed %d\n", sent.Load(), failed.Load())
	fmt.Printf("RSS after 30 s warm-up %s, at the end %s, peak %s\n", rssStart, rssEnd, hwm)
	fmt.Printf("secret map reloads: %s\n", reloadCounts(ctx, "http://"+metricsAddr+"/metrics"))
	if failed.Load() > 0 {
		return fmt.Errorf("%d admissions failed; first: %v", failed.Load(), firstErr.Load())
	}
	if a, b := kib(rssStart), kib(rssEnd); a > 0 && b > a+a/5 {
		return fmt.Errorf("RSS grew from %s to %s (more than 20%%)", rssStart, rssEnd)
	}
	return nil
}

func reloadCounts(ctx context.Context, url string) string {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "unknown"
	}
	defer func() { _ = resp.Body.Close() }()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	var out []string
	for _, line := range strings.Split(buf.String(), "\n") {
		if strings.HasPrefix(line, "flowauth_secret_map_reloads_total{") {
			out = append(out, strings.TrimPrefix(line, "flowauth_secret_map_reloads_total"))
		}
	}
	return strings.Join(out, ", ")
}

func kib(s string) int {
	n, _ := strconv.Atoi(strings.TrimSuffix(s, " kB"))
	return n
}
