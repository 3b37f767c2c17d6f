package localcluster

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// recordPath is where a running node says what it has put on the machine. A node whose harness
// died is cleaned up from it by the next start (or by `make cluster-down`).
const recordPath = "/run/flowauth-localcluster.json"

// record lists what a node puts on the machine beyond its folder, and what it found there.
type record struct {
	// Work is the cluster's folder (kubeconfig, logs), Dir the node's state inside it.
	Work       string `json:"work"`
	Dir        string `json:"dir"`
	NodeBin    string `json:"nodeBin"`
	Owner      int    `json:"owner"`
	OwnerSince string `json:"ownerSince"` // the owner's start time, so a reused pid is not taken for it
	PIDs       []int  `json:"pids"`
	// Sysctls the kubelet, kube-proxy and the CNI bridge plugin set, as they were before.
	Sysctls map[string]string `json:"sysctls"`
}

// touchedSysctls are the machine-wide settings that the node's parts change: the kubelet's kernel
// tunables, IP forwarding (the bridge plugin's gateway), and bridge netfilter (kube-proxy).
var touchedSysctls = []string{
	"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes", "net/ipv4/ip_forward",
	"net/ipv4/conf/all/route_localnet", "net/bridge/bridge-nf-call-iptables",
}

// claim cleans up after a node whose harness died, refuses to start beside a live one, and
// records the new node.
func claim(dir, nodeBin string) (*record, error) {
	if old, err := readRecord(); err == nil {
		if processStartTime(old.Owner) == old.OwnerSince && old.Owner != os.Getpid() {
			return nil, fmt.Errorf("a local node is already running (harness pid %d, folder %s): stop it first (`make cluster-down`)", old.Owner, old.Dir)
		}
		if err := old.cleanupAfterCrash(); err != nil {
			return nil, fmt.Errorf("cleaning up after the node of an earlier run (%s): %w", old.Dir, err)
		}
	}
	rec := &record{Work: filepath.Dir(dir), Dir: dir, NodeBin: nodeBin, Owner: os.Getpid(), OwnerSince: processStartTime(os.Getpid()), Sysctls: map[string]string{}}
	for _, s := range touchedSysctls {
		if v, err := os.ReadFile("/proc/sys/" + s); err == nil {
			rec.Sysctls[s] = strings.TrimSpace(string(v))
		}
	}
	return rec, rec.save()
}

func readRecord() (*record, error) {
	b, err := os.ReadFile(recordPath)
	if err != nil {
		return nil, err
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", recordPath, err)
	}
	return &r, nil
}

func (r *record) save() error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	tmp := recordPath + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, recordPath)
}

func (r *record) addPID(pid int) error {
	r.PIDs = append(r.PIDs, pid)
	return r.save()
}

// CleanupAfterCrash removes what a node left on the machine when its harness died: `make
// cluster-down` calls it when the harness is gone. It does nothing when no node is recorded, and
// refuses while the recorded harness still runs.
func CleanupAfterCrash() error {
	r, err := readRecord()
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if processStartTime(r.Owner) == r.OwnerSince {
		return fmt.Errorf("the node's harness (pid %d) still runs", r.Owner)
	}
	return r.cleanupAfterCrash()
}

// cleanupAfterCrash is cleanup, and then the whole cluster folder goes too: no harness is left
// to remove it.
func (r *record) cleanupAfterCrash() error {
	err := r.cleanup()
	if r.Work != "" {
		err = errors.Join(err, os.RemoveAll(r.Work))
	}
	return err
}

// cleanup ends every process of the node, removes its iptables chains, mounts, cgroups and bridge,
// puts the sysctls back, and deletes its folder and the record. Each step goes on after another
// fails; the errors are joined.
func (r *record) cleanup() error {
	var errs []error
	// The node's own processes (by id, if still the same process), then everything that names
	// its folder: runc shims and the containers they hold.
	for _, pid := range r.PIDs {
		if p, err := os.FindProcess(pid); err == nil && strings.Contains(cmdline(pid), r.Dir) {
			_ = p.Signal(syscall.SIGKILL)
		}
	}
	killCgroupProcs()
	mentioned := r.Dir
	if r.Work != "" {
		mentioned = r.Work
	}
	for _, pid := range pidsMentioning(mentioned) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	time.Sleep(200 * time.Millisecond)

	if proxy := filepath.Join(r.NodeBin, "kube-proxy"); fileExists(proxy) {
		if out, err := exec.CommandContext(context.Background(), proxy, "--cleanup").CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("kube-proxy --cleanup: %w: %s", err, lastLine(out)))
		}
	}
	if err := removeKubeletChains(); err != nil {
		errs = append(errs, err)
	}
	if err := removeBlackholes(); err != nil {
		errs = append(errs, err)
	}
	if err := unmountUnder(r.Dir); err != nil {
		errs = append(errs, err)
	}
	if err := removeKubepodsCgroups(); err != nil {
		errs = append(errs, err)
	}
	for _, bridge := range nodeBridges() {
		if out, err := exec.CommandContext(context.Background(), "ip", "link", "del", bridge).CombinedOutput(); err != nil && !strings.Contains(string(out), "Cannot find device") {
			errs = append(errs, fmt.Errorf("ip link del %s: %w: %s", bridge, err, out))
		}
	}
	for s, v := range r.Sysctls {
		if cur, err := os.ReadFile("/proc/sys/" + s); err == nil && strings.TrimSpace(string(cur)) != v {
			if err := os.WriteFile("/proc/sys/"+s, []byte(v), 0o600); err != nil {
				errs = append(errs, fmt.Errorf("restoring %s to %s: %w", s, v, err))
			}
		}
	}
	// The kubelet links every container's log into /var/log/containers, whatever podLogsDir says.
	if links, err := filepath.Glob("/var/log/containers/*.log"); err == nil {
		for _, l := range links {
			if target, err := os.Readlink(l); err == nil && strings.HasPrefix(target, r.Dir+"/") {
				_ = os.Remove(l)
			}
		}
	}
	if err := os.RemoveAll(r.Dir); err != nil {
		errs = append(errs, err)
	}
	if err := os.Remove(recordPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// kubeletChains are the iptables chains the kubelet itself makes (kube-proxy --cleanup removes
// kube-proxy's, not these).
var kubeletChains = []string{"KUBE-FIREWALL", "KUBE-KUBELET-CANARY"}

// removeKubeletChains deletes the rules that jump to the kubelet's chains, then the chains, in
// every table of iptables and ip6tables.
func removeKubeletChains() error {
	var errs []error
	for _, tool := range []string{"iptables", "ip6tables"} {
		if _, err := exec.LookPath(tool); err != nil {
			continue
		}
		for _, table := range []string{"filter", "nat", "mangle"} {
			out, err := exec.CommandContext(context.Background(), tool, "-w", "-t", table, "-S").Output()
			if err != nil {
				continue
			}
			var present []string
			for _, line := range strings.Split(string(out), "\n") {
				f := strings.Fields(line)
				switch {
				case len(f) == 2 && f[0] == "-N" && slices.Contains(kubeletChains, f[1]):
					present = append(present, f[1])
				case len(f) > 3 && f[0] == "-A" && !slices.Contains(kubeletChains, f[1]) && jumpsTo(f, kubeletChains):
					if b, err := exec.CommandContext(context.Background(), tool, append([]string{"-w", "-t", table, "-D"}, f[1:]...)...).CombinedOutput(); err != nil {
						errs = append(errs, fmt.Errorf("%s -t %s -D %s: %w: %s", tool, table, strings.Join(f[1:], " "), err, b))
					}
				}
			}
			for _, chain := range present {
				for _, op := range []string{"-F", "-X"} {
					if b, err := exec.CommandContext(context.Background(), tool, "-w", "-t", table, op, chain).CombinedOutput(); err != nil {
						errs = append(errs, fmt.Errorf("%s -t %s %s %s: %w: %s", tool, table, op, chain, err, b))
					}
				}
			}
		}
	}
	return errors.Join(errs...)
}

// removeBlackholes deletes the DROP rules to the nodes' pod ranges that LoseNode and the tests
// that cut the API server off from pods insert, should their harness die before taking them out.
func removeBlackholes() error {
	out, err := exec.CommandContext(context.Background(), "iptables", "-w", "-S").Output()
	if err != nil {
		return nil //nolint:nilerr // no iptables, no rules
	}
	var errs []error
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || f[0] != "-A" || (f[1] != "OUTPUT" && f[1] != "FORWARD") || !strings.Contains(line, "-d 198.18.") || !strings.HasSuffix(line, "-j DROP") {
			continue
		}
		if b, err := exec.CommandContext(context.Background(), "iptables", append([]string{"-w", "-D"}, f[1:]...)...).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("iptables -D %s: %w: %s", strings.Join(f[1:], " "), err, b))
		}
	}
	return errors.Join(errs...)
}

// jumpsTo says whether the rule's fields (as `iptables -S` prints them) jump to one of chains.
func jumpsTo(rule, chains []string) bool {
	for i := 1; i < len(rule); i++ {
		if rule[i-1] == "-j" && slices.Contains(chains, rule[i]) {
			return true
		}
	}
	return false
}

// cgroupRoots are the mounted cgroup hierarchies (v1 controllers, named ones and the unified one).
func cgroupRoots() []string {
	var roots []string
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer func() { _ = f.Close() }()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		sep := slices.Index(fields, "-")
		if sep > 0 && sep+1 < len(fields) && strings.HasPrefix(fields[sep+1], "cgroup") {
			roots = append(roots, fields[4])
		}
	}
	return roots
}

// nodeBridges are the bridges of the nodes (flowauth0, flowauth1, ...) present on the machine.
func nodeBridges() []string {
	out, err := exec.CommandContext(context.Background(), "ip", "-o", "link", "show", "type", "bridge").Output()
	if err != nil {
		return nil
	}
	var bridges []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name := strings.TrimSuffix(f[1], ":")
		if n, ok := strings.CutPrefix(name, bridgePrefix); ok {
			if _, err := strconv.Atoi(n); err == nil {
				bridges = append(bridges, name)
			}
		}
	}
	return bridges
}

// kubepodsDirs are the kubelets' cgroups (the kubepods tree under each hierarchy, and the
// folders of the nodes after the first with theirs), deepest first. Only these are the nodes':
// nothing else in a hierarchy is touched.
func kubepodsDirs() []string {
	var dirs []string
	for _, root := range cgroupRoots() {
		tops := []string{filepath.Join(root, "kubepods")}
		if more, err := filepath.Glob(filepath.Join(root, NodeName+"-*")); err == nil {
			tops = append(tops, more...)
		}
		for _, top := range tops {
			_ = filepath.WalkDir(top, func(path string, d os.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					dirs = append(dirs, path)
				}
				return nil
			})
		}
	}
	slices.SortFunc(dirs, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	return dirs
}

func killCgroupProcs() {
	for _, dir := range kubepodsDirs() {
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}

func removeKubepodsCgroups() error {
	var last error
	for range 50 {
		last = nil
		for _, dir := range kubepodsDirs() {
			if err := syscall.Rmdir(dir); err != nil && !errors.Is(err, syscall.ENOENT) {
				last = fmt.Errorf("removing cgroup %s: %w", dir, err)
			}
		}
		if last == nil {
			return nil
		}
		killCgroupProcs()
		time.Sleep(100 * time.Millisecond)
	}
	return last
}

// unmountUnder detaches every mount at or below dir (the kubelet's bind mount of its root,
// Secret and token tmpfs volumes, container root filesystems, network namespaces), deepest first.
func unmountUnder(dir string) error {
	for range 5 {
		b, err := os.ReadFile("/proc/self/mountinfo")
		if err != nil {
			return err
		}
		var points []string
		for _, line := range strings.Split(string(b), "\n") {
			fields := strings.Fields(line)
			if len(fields) > 4 && (fields[4] == dir || strings.HasPrefix(fields[4], dir+"/")) {
				points = append(points, fields[4])
			}
		}
		if len(points) == 0 {
			return nil
		}
		slices.SortFunc(points, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
		for _, p := range points {
			_ = syscall.Unmount(p, syscall.MNT_DETACH)
		}
	}
	return fmt.Errorf("mounts remain under %s", dir)
}

func pidsMentioning(s string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if strings.Contains(cmdline(pid), s) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func cmdline(pid int) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return strings.ReplaceAll(string(b), "\x00", " ")
}

// processStartTime is field 22 of /proc/PID/stat ("" when there is no such process).
func processStartTime(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	// The command name (field 2) may hold spaces; fields after its closing parenthesis are plain.
	rest := string(b[strings.LastIndexByte(string(b), ')')+1:])
	fields := strings.Fields(rest)
	if len(fields) < 20 {
		return ""
	}
	return fields[19]
}

func fileExists(path string) bool { _, err := os.Stat(path); return err == nil }

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}
