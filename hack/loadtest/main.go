// Command loadtest is `make loadtest`: it builds the load harness, the floor and the limit from
// ../shared/bench/admload, starts them and flowauth (no cluster connection) with TLS on loopback,
// runs the harness against each in alternation at each concurrency, and prints one table of
// medians with flowauth's ratio to the floor and to the limit, each server's CPU per admission,
// and flowauth's RSS. The limit decodes nothing: what TLS and HTTP/1.1 alone cost here. For a
// profile flowauth patches, the limit answers every request with flowauth's own patch for that
// profile, so the client pays for answers of the same size.
package main

import (
	"bytes"
	"context"
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
	"strings"
	"time"

	"github.com/flowauth/flowauth/internal/results"
	"github.com/flowauth/flowauth/test/localcluster"
)

type result struct {
	Requests int     `json:"requests"`
	Errors   int     `json:"errors"`
	Patched  int     `json:"patched"`
	RPS      float64 `json:"rps"`
	P50ms    float64 `json:"p50_ms"`
	P99ms    float64 `json:"p99_ms"`
	// CPUus is the target's CPU time per request during the run (measured here, not by admload).
	CPUus float64 `json:"-"`
	// ClientCPUus is the harness's own CPU time per request: with the server it shares the two
	// cores, and it spends more per request when answers come slower.
	ClientCPUus float64 `json:"-"`
}

func main() {
	bench := flag.String("bench", "../shared/bench/admload", "the admload module (read-only is fine)")
	profile := flag.String("profile", "flowrun", "admload profile")
	conc := flag.String("c", "1,8,32", "concurrencies")
	dur := flag.Duration("d", 5*time.Second, "duration of each run")
	rounds := flag.Int("rounds", 5, "alternating runs per target and concurrency (medians are reported)")
	cpuProfiles := flag.String("cpuprofile", "", "folder to write flowauth's CPU profile of its last run at each concurrency to (flowauth-PROFILE-cC.pprof; read with go tool pprof)")
	page := flag.String("results", "", "write the report into this page's \"make loadtest\" section (make loadtest: docs/performance.md)")
	flag.Parse()
	report := results.New("loadtest")
	if err := run(report.Out(), *bench, *profile, *conc, *dur, *rounds, *cpuProfiles); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
	if err := report.Write(*page); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
}

func run(out io.Writer, bench, profile, conc string, dur time.Duration, rounds int, cpuProfiles string) error {
	tmp, err := os.MkdirTemp("", "flowauth-loadtest-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	admload, floor, limit, webhook := filepath.Join(tmp, "admload"), filepath.Join(tmp, "floor"), filepath.Join(tmp, "limit"), filepath.Join(tmp, "webhook")
	for _, b := range []struct{ dir, out, pkg string }{{bench, admload, "."}, {bench, floor, "./cmd/floor"}, {bench, limit, "./cmd/limit"}, {".", webhook, "./cmd/webhook"}} {
		// All three are built as the image builds flowauth (static, no cgo, stripped), so neither side
		// carries a libc the other does not.
		cmd := exec.CommandContext(context.Background(), "go", "build", "-trimpath", "-ldflags=-s -w", "-o", b.out, b.pkg)
		cmd.Dir = b.dir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("building %s in %s: %w\n%s", b.pkg, b.dir, err, out)
		}
	}
	certs := filepath.Join(tmp, "certs")
	if err := os.Mkdir(certs, 0o700); err != nil {
		return err
	}
	floorAddr, err := localcluster.FreeAddr()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	floorCmd := exec.CommandContext(ctx, floor, "-addr", floorAddr, "-cert-dir", certs)
	if err := floorCmd.Start(); err != nil {
		return err
	}
	defer func() { _ = floorCmd.Process.Kill() }()
	// The floor writes a self-signed certificate for 127.0.0.1; flowauth serves the same one.
	if err := waitFor(filepath.Join(certs, "tls.key")); err != nil {
		return err
	}
	whAddr, err := localcluster.FreeAddr()
	if err != nil {
		return err
	}
	_, port, _ := net.SplitHostPort(whAddr)
	pprofAddr, err := localcluster.FreeAddr()
	if err != nil {
		return err
	}
	whCmd := exec.CommandContext(ctx, webhook, "--cluster-connection=false", "--namespace-defaults=false", "--port="+port, "--cert-dir="+certs,
		"--metrics-bind-address=0", "--health-probe-bind-address=0", "--pprof-bind-address="+pprofAddr, "--log-level=error")
	if err := whCmd.Start(); err != nil {
		return err
	}
	defer func() { _ = whCmd.Process.Kill() }()
	time.Sleep(time.Second)

	// The limit answers with flowauth's own patch for this profile (none for plain).
	limitArgs := []string{"-addr", "", "-cert-dir", certs}
	patch, err := flowauthPatch(ctx, admload, "https://"+whAddr+"/mutate-v1-pod", filepath.Join(certs, "tls.crt"), profile)
	if err != nil {
		return err
	}
	limitName := "limit"
	if len(patch) > 0 {
		patchFile := filepath.Join(tmp, "patch.json")
		if err := os.WriteFile(patchFile, patch, 0o600); err != nil {
			return err
		}
		limitArgs = append(limitArgs, "-patch", patchFile)
		limitName = "patched limit"
	}
	limitAddr, err := localcluster.FreeAddr()
	if err != nil {
		return err
	}
	limitArgs[1] = limitAddr
	limitCmd := exec.CommandContext(ctx, limit, limitArgs...)
	if err := limitCmd.Start(); err != nil {
		return err
	}
	defer func() { _ = limitCmd.Process.Kill() }()
	time.Sleep(500 * time.Millisecond)

	targets := []struct {
		name, url string
		pid       int
	}{
		{"floor", "https://" + floorAddr + "/mutate-v1-pod", floorCmd.Process.Pid},
		{"limit", "https://" + limitAddr + "/mutate-v1-pod", limitCmd.Process.Pid},
		{"flowauth", "https://" + whAddr + "/mutate-v1-pod", whCmd.Process.Pid},
	}
	fmt.Fprintf(out, "profile=%s, %d alternating rounds of %s per target and concurrency, medians; the limit column is the %s (%d-byte patch)\n\n",
		profile, rounds, dur, limitName, len(patch))
	fmt.Fprintf(out, "| c | floor rps | limit rps | flowauth rps | ratio to floor | ratio to limit | floor p99 ms | limit p99 ms | flowauth p99 ms | p99 ratio to floor | floor CPU µs/req | limit CPU µs/req | flowauth CPU µs/req | harness CPU µs/req (floor / limit / flowauth) | flowauth RSS MiB (median / max) | errors |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	var rss []int // flowauth's VmRSS in kB, sampled while it is under load
	for _, c := range strings.Split(conc, ",") {
		runs := map[string][]result{}
		var rssHere []int
		for r := 0; r < rounds; r++ {
			for _, t := range targets {
				var sampled []int
				stop := make(chan struct{})
				done := make(chan struct{})
				go func() {
					defer close(done)
					sampled = sampleRSS(t.pid, stop)
				}()
				profiled := make(chan error, 1)
				if cpuProfiles != "" && t.name == "flowauth" && r == rounds-1 {
					go func() {
						// Taken over the run less a second, so it ends inside the run.
						profiled <- localcluster.SaveCPUProfile(ctx, http.DefaultClient, "http://"+pprofAddr+"/debug/pprof/profile", dur-time.Second,
							filepath.Join(cpuProfiles, fmt.Sprintf("flowauth-%s-c%s.pprof", profile, c)))
					}()
				} else {
					profiled <- nil
				}
				before := localcluster.CPUTime(t.pid)
				res, err := harness(ctx, admload, t.url, filepath.Join(certs, "tls.crt"), profile, c, dur)
				close(stop)
				<-done
				if perr := <-profiled; perr != nil {
					return perr
				}
				if err != nil {
					return fmt.Errorf("%s c=%s: %w", t.name, c, err)
				}
				if res.Requests > 0 {
					res.CPUus = float64((localcluster.CPUTime(t.pid) - before).Microseconds()) / float64(res.Requests)
				}
				if t.name == "flowauth" {
					rssHere = append(rssHere, sampled...)
				}
				runs[t.name] = append(runs[t.name], res)
			}
		}
		f, l, w := median(runs["floor"]), median(runs["limit"]), median(runs["flowauth"])
		fmt.Fprintf(out, "| %s | %.0f | %.0f | %.0f | %.2f | %.2f | %.3f | %.3f | %.3f | %.2f | %.0f | %.0f | %.0f | %.0f / %.0f / %.0f | %s | %d |\n", c, f.RPS, l.RPS, w.RPS, w.RPS/f.RPS, w.RPS/l.RPS,
			f.P99ms, l.P99ms, w.P99ms, w.P99ms/f.P99ms, f.CPUus, l.CPUus, w.CPUus, f.ClientCPUus, l.ClientCPUus, w.ClientCPUus, medianMax(rssHere), f.Errors+l.Errors+w.Errors)
		rss = append(rss, rssHere...)
	}
	fmt.Fprintf(out, "\nflowauth RSS under load (VmRSS every %s, first second of each run skipped), all runs: %s MiB; peak since start (VmHWM): %s\n",
		rssEvery, medianMax(rss), localcluster.ProcStatus(whCmd.Process.Pid, "VmHWM"))
	return nil
}

// flowauthPatch sends the profile's request (admload -dump) to flowauth and returns the JSON Patch
// it answers with (empty when it patches nothing).
func flowauthPatch(ctx context.Context, admload, url, ca, profile string) ([]byte, error) {
	body, err := exec.CommandContext(ctx, admload, "-profile", profile, "-dump").Output()
	if err != nil {
		return nil, fmt.Errorf("admload -dump: %w", err)
	}
	caPEM, err := os.ReadFile(ca)
	if err != nil {
		return nil, err
	}
	answer, _, err := localcluster.Review(ctx, localcluster.TLSClient(caPEM), url, body)
	if err != nil || answer == nil {
		return nil, fmt.Errorf("flowauth's answer to the %s profile: %v, %w", profile, answer, err)
	}
	return answer.Patch, nil
}

// medianMax formats the median and the largest of samples in kB as MiB.
func medianMax(samples []int) string {
	if len(samples) == 0 {
		return "n/a"
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	return fmt.Sprintf("%.1f / %.1f", float64(s[len(s)/2])/1024, float64(s[len(s)-1])/1024)
}

// rssEvery is how often VmRSS is sampled during a run.
const rssEvery = 250 * time.Millisecond

// sampleRSS reads pid's VmRSS (kB) every rssEvery until stop, skipping the first second of the
// run (the harness's warm-up and connection set-up).
func sampleRSS(pid int, stop <-chan struct{}) []int {
	var out []int
	start := time.Now()
	tick := time.NewTicker(rssEvery)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return out
		case <-tick.C:
			if time.Since(start) < time.Second {
				continue
			}
			var kb int
			if _, err := fmt.Sscanf(localcluster.ProcStatus(pid, "VmRSS"), "%d kB", &kb); err == nil {
				out = append(out, kb)
			}
		}
	}
}

func harness(ctx context.Context, admload, url, ca, profile, c string, dur time.Duration) (result, error) {
	cmd := exec.CommandContext(ctx, admload, "-url", url, "-ca", ca, "-profile", profile, "-c", c, "-d", dur.String(), "-json")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	runErr := cmd.Run()
	var r result
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		return r, fmt.Errorf("admload: %w %s %s", runErr, out.String(), errOut.String())
	}
	if r.Requests > 0 {
		r.ClientCPUus = float64((cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Microseconds()) / float64(r.Requests)
	}
	return r, nil
}

// median takes each figure's median separately across the runs.
func median(rs []result) result {
	pick := func(f func(result) float64) float64 { return localcluster.Median(rs, f) }
	errs := 0
	for _, r := range rs {
		errs += r.Errors
	}
	return result{
		RPS: pick(func(r result) float64 { return r.RPS }), Errors: errs,
		P50ms: pick(func(r result) float64 { return r.P50ms }), P99ms: pick(func(r result) float64 { return r.P99ms }),
		CPUus: pick(func(r result) float64 { return r.CPUus }), ClientCPUus: pick(func(r result) float64 { return r.ClientCPUus }),
	}
}

func waitFor(path string) error {
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(path); err == nil {
			time.Sleep(100 * time.Millisecond)
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s never appeared", path)
}
