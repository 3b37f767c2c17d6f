package localcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// Nodes are the names of the cluster's nodes, the first first.
func (c *Cluster) Nodes() []string {
	if c.node == nil {
		return nil
	}
	var names []string
	for _, m := range c.node.members {
		names = append(names, m.name)
	}
	return names
}

func (c *Cluster) member(name string) (*member, error) {
	if c.node != nil {
		for _, m := range c.node.members {
			if m.name == name {
				return m, nil
			}
		}
	}
	return nil, fmt.Errorf("no node %q in this cluster (%v)", name, c.Nodes())
}

// LoseNode makes a node vanish the way a machine that dies or drops off the network does, as
// the API server and the other nodes see it: its kubelet is killed (its status stops), its pods'
// processes are stopped where they stand (SIGSTOP, not a clean exit: no connection is closed),
// and every packet to its addresses (its InternalIP and pod range) is dropped, so calls to it
// hang rather than fail fast. The returned function brings it back: packets flow, the pods go
// on, a new kubelet starts.
func (c *Cluster) LoseNode(name string) (restore func() error, err error) {
	m, err := c.member(name)
	if err != nil {
		return nil, err
	}
	undrop, err := DropPackets([]string{"OUTPUT", "-d", m.cidr}, []string{"FORWARD", "-d", m.cidr})
	if err != nil {
		return nil, err
	}
	if m.kubelet != nil && m.kubelet.ProcessState == nil {
		_ = m.kubelet.Process.Kill()
		_ = m.kubelet.Wait()
	}
	stopped := m.podProcesses()
	for _, pid := range stopped {
		_ = syscall.Kill(pid, syscall.SIGSTOP)
	}
	return func() error {
		errs := []error{undrop()}
		for _, pid := range stopped {
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
		return errors.Join(append(errs, c.runKubelet(context.Background(), m))...)
	}, nil
}

// DropPackets inserts iptables rules dropping the packets each match selects (a chain and its
// match, e.g. OUTPUT -d 198.18.1.0/24) and returns what takes them out again. Only packets to the
// nodes' pod range may be dropped: the crash cleanup (removeBlackholes) finds the rules by that.
func DropPackets(matches ...[]string) (undo func() error, err error) {
	var added [][]string
	undo = func() error {
		var errs []error
		for _, r := range added {
			if out, err := exec.CommandContext(context.Background(), "iptables", append([]string{"-w", "-D"}, r...)...).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("iptables -D %s: %w: %s", strings.Join(r, " "), err, out))
			}
		}
		return errors.Join(errs...)
	}
	for _, m := range matches {
		if !strings.Contains(strings.Join(m, " "), "-d 198.18.") {
			return nil, errors.Join(fmt.Errorf("DropPackets %v: only packets to the pod range (-d 198.18.x) may be dropped", m), undo())
		}
		r := append(slices.Clone(m), "-j", "DROP")
		if out, err := exec.CommandContext(context.Background(), "iptables", append([]string{"-w", "-I"}, r...)...).CombinedOutput(); err != nil {
			return nil, errors.Join(fmt.Errorf("iptables -I %s: %w: %s", strings.Join(r, " "), err, out), undo())
		}
		added = append(added, r)
	}
	return undo, nil
}

// podProcesses are the processes in the node's pods' cgroups (the pids hierarchy, or the
// unified one).
func (m *member) podProcesses() []int {
	var pids []int
	for _, h := range cgroupRoots() {
		top := filepath.Join(h, m.cgroupRoot, "kubepods")
		if _, err := os.Stat(filepath.Join(top, "cgroup.procs")); err != nil {
			continue
		}
		seen := map[int]bool{}
		_ = filepath.WalkDir(top, func(path string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			b, _ := os.ReadFile(filepath.Join(path, "cgroup.procs"))
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil && !seen[pid] {
					seen[pid] = true
					pids = append(pids, pid)
				}
			}
			return nil
		})
		if len(pids) > 0 {
			return pids
		}
	}
	return pids
}
