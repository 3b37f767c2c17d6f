package localcluster

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// CPUTime is the user and system CPU time a process has used so far (0 if it cannot be read): read
// before and after a run, it gives the process's share of the machine during the run.
func CPUTime(pid int) time.Duration {
	fields := statFields(pid)
	if len(fields) < 13 {
		return 0
	}
	var utime, stime int64
	_, _ = fmt.Sscan(fields[11], &utime)
	_, _ = fmt.Sscan(fields[12], &stime)
	// USER_HZ is 100 on Linux.
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// statFields are the fields of /proc/<pid>/stat after the command name (which may hold spaces),
// so fields[0] is the state, fields[1] the parent's pid, fields[11] utime.
func statFields(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil
	}
	return strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
}

// ControlPlanePIDs are the pids of the cluster's etcd and kube-apiserver, by name: envtest starts
// them as children of this process.
func (c *Cluster) ControlPlanePIDs() (map[string]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	pids := map[string]int{}
	self := strconv.Itoa(os.Getpid())
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if f := statFields(pid); len(f) > 1 && f[1] == self {
			comm, _ := os.ReadFile("/proc/" + e.Name() + "/comm")
			if name := strings.TrimSpace(string(comm)); name == "etcd" || name == "kube-apiserver" {
				pids[name] = pid
			}
		}
	}
	if len(pids) != 2 {
		return pids, fmt.Errorf("found %v among this process's children, want etcd and kube-apiserver", pids)
	}
	return pids, nil
}

// WebhookPID is the pid of the registered webhook binary (0 when it is stopped).
func (c *Cluster) WebhookPID() int {
	if c.webhook == nil || c.webhook.cmd.Process == nil {
		return 0
	}
	return c.webhook.cmd.Process.Pid
}

// SaveCPUProfile writes the CPU profile that url (a /debug/pprof/profile endpoint) takes over the
// next d to file.
func SaveCPUProfile(ctx context.Context, hc *http.Client, url string, d time.Duration, file string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s?seconds=%d", url, max(int(d.Seconds()), 1)), nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("CPU profile from %s: %w", url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("CPU profile from %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("CPU profile from %s: %s: %.200s", url, resp.Status, body)
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o750); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote %s\n", file)
	return os.WriteFile(file, body, 0o600)
}

// Median is the median of figure over runs (the upper middle one of an even count; 0 for none):
// the load tools report each figure's median across alternating runs separately.
func Median[T any](runs []T, figure func(T) float64) float64 {
	if len(runs) == 0 {
		return 0
	}
	v := make([]float64, len(runs))
	for i, r := range runs {
		v[i] = figure(r)
	}
	slices.Sort(v)
	return v[len(v)/2]
}
