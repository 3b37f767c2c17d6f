package localcluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
)

// RestartAPIServer stops kube-apiserver and starts it again with the command line envtest gave
// it plus extra flags (those of an earlier restart are dropped), on the same ports, certificates
// and etcd, and waits until it answers: for what a client does when its watches break and it
// must list again (make scale's relist), and to serve with other feature gates.
func (c *Cluster) RestartAPIServer(ctx context.Context, extra ...string) error {
	pids, err := c.ControlPlanePIDs()
	if err != nil {
		return err
	}
	pid := pids["kube-apiserver"]
	if c.apiServerArgs == nil {
		raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		if err != nil {
			return err
		}
		c.apiServerArgs = strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("stopping kube-apiserver: %w", err)
	}
	exited := func() error {
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil && !isZombie(pid) {
			return fmt.Errorf("pid %d still runs", pid)
		}
		return nil
	}
	// It drains its watches for a while after SIGTERM; a restart need not wait for that.
	if waitFor(ctx, 10*time.Second, "kube-apiserver to exit", exited) != nil {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		if err := waitFor(ctx, 30*time.Second, "kube-apiserver to exit after SIGKILL", exited); err != nil {
			return err
		}
	}
	args := slices.Concat(c.apiServerArgs[1:], extra)
	cmd := exec.CommandContext(ctx, c.apiServerArgs[0], args...)
	cmd.Stdout, cmd.Stderr = c.logTo(), c.logTo()
	if err := c.run(cmd); err != nil {
		return fmt.Errorf("starting kube-apiserver: %w", err)
	}
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return err
	}
	return waitFor(ctx, 2*time.Minute, "kube-apiserver to be ready", func() error {
		_, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err
	})
}

// isZombie reports whether pid has exited but not been reaped (envtest reaps its own child).
func isZombie(pid int) bool {
	f := statFields(pid)
	return len(f) > 0 && f[0] == "Z"
}
