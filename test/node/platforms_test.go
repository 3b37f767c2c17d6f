package node

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowauth/flowauth/test/localcluster"
)

// webhookProcesses are the pids of the chart's webhook processes running on this machine (its
// pods' main processes: argv[0] /webhook serving certificates from the chart's mount).
func webhookProcesses(t *testing.T) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if args[0] == "/webhook" && strings.Contains(string(b), "--cert-dir=/etc/flowauth/certs") {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestHostNetworkWhenPodsAreUnreachable (issue 23, item 3): with the control plane unable to
// reach pod addresses on the webhook port (what a GKE private cluster's firewall or an EKS
// custom CNI does), flow runs are refused and doctor names the cause; the chart's host-network
// mode, on ports of its own, serves them again from the node's address.
func TestHostNetworkWhenPodsAreUnreachable(t *testing.T) {
	needNode(t)
	ns := newNamespace(t, "hostnet")
	kubectl(t, "-n", ns, "create", "secret", "generic", "github-access-token", "--from-literal=token=hostnet")
	ctx := context.Background()

	// The API server runs on this machine: its packets to pods leave through OUTPUT. The kubelet's
	// probes go to the health port, which stays open, as on a cloud.
	undo, err := localcluster.DropPackets([]string{"OUTPUT", "-p", "tcp", "-d", localcluster.PodCIDR, "--dport", helmValueOr(t, "9443", "webhook", "port")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := undo(); err != nil {
			t.Error(err)
		}
	})
	if _, err := cluster.CreateFlowRun(ctx, ns, "blocked"); err == nil || !strings.Contains(err.Error(), "failed calling webhook") {
		t.Fatalf("a flow run was admitted while the webhook port was unreachable: %v", err)
	}
	out, _, code := kubectlPlugin(t, "doctor", "-n", ns)
	if code == 0 {
		t.Errorf("doctor passed with the webhook unreachable:\n%s", out)
	}
	requireLines(t, out, "the API server cannot call flowauth: its packets to the webhook's address are dropped", "EKS with a custom CNI", "values-host-network.yaml")

	helmUpgrade(t, []string{"hostNetwork.enabled=false", "replicaCount=2"},
		"hostNetwork.enabled=true", "replicaCount=1")
	_, err = cluster.CreateFlowRun(ctx, ns, "served")
	if err != nil {
		t.Fatalf("a flow run was refused, or stored uninjected, with the webhook on the host network: %v", err)
	}
	// The Service's endpoint is the node's address, on the host-network port.
	endpoints := kubectl(t, "-n", localcluster.FlowauthNamespace, "get", "endpointslices", "-l", "kubernetes.io/service-name=flowauth", "-o", "json")
	var list struct {
		Items []struct {
			Endpoints []struct{ Addresses []string } `json:"endpoints"`
			Ports     []struct {
				Name string `json:"name"`
				Port int    `json:"port"`
			} `json:"ports"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(endpoints), &list); err != nil {
		t.Fatal(err)
	}
	var seen []string
	for _, s := range list.Items {
		for _, e := range s.Endpoints {
			for _, p := range s.Ports {
				seen = append(seen, strings.Join(e.Addresses, ",")+":"+p.Name+"="+strconv.Itoa(p.Port))
			}
		}
	}
	if want := localcluster.GatewayIP + ":https=10270"; !strings.Contains(strings.Join(seen, " "), want) {
		t.Errorf("endpoints %v; want %s (the node's address, hostNetwork.webhookPort)", seen, want)
	}
	out, _, _ = kubectlPlugin(t, "doctor", "-n", ns)
	requireLines(t, out, "the API server reaches flowauth: a dry-run flow-run pod in "+ns+" was answered")
}

// helmValueOr is helmValue with a default for values the release leaves at the chart's.
func helmValueOr(t *testing.T, def string, path ...string) string {
	t.Helper()
	return orDefault(helmValue(t, path...), def)
}

// TestArbitraryUID (issue 23, item 4): with examples/values-openshift.yaml the release sets no
// UID, GID or fsGroup; given the ones OpenShift's restricted SCC assigns (a UID of the
// namespace's range, an fsGroup, group 0), the webhook runs as that UID, non-root, on a
// read-only root filesystem, reads its mounted certificate and serves flow runs.
func TestArbitraryUID(t *testing.T) {
	needNode(t)
	const uid = 1000680000
	ns := newNamespace(t, "arbitrary-uid")
	kubectl(t, "-n", ns, "create", "secret", "generic", "github-access-token", "--from-literal=token=uid")
	helmUpgrade(t, []string{"podSecurityContext.runAsUser=65532", "podSecurityContext.runAsGroup=65532", "podSecurityContext.fsGroup=65532"},
		"podSecurityContext.runAsUser=null", "podSecurityContext.runAsGroup=null", "podSecurityContext.fsGroup=null")
	deploy := kubectl(t, "-n", localcluster.FlowauthNamespace, "get", "deployment", "flowauth", "-o", "jsonpath={.spec.template.spec.securityContext}{.spec.template.spec.containers[0].securityContext}")
	for _, unset := range []string{"runAsUser", "runAsGroup", "fsGroup"} {
		if strings.Contains(deploy, unset) {
			t.Fatalf("the release still sets %s: %s", unset, deploy)
		}
	}
	// What the SCC's admission adds to the pod, here added to its template.
	patch := `[{"op":"add","path":"/spec/template/spec/securityContext/fsGroup","value":` + strconv.Itoa(uid) + `},` +
		`{"op":"add","path":"/spec/template/spec/containers/0/securityContext/runAsUser","value":` + strconv.Itoa(uid) + `}]`
	kubectl(t, "-n", localcluster.FlowauthNamespace, "patch", "deployment", "flowauth", "--type=json", "-p", patch)
	t.Cleanup(func() {
		// helm's three-way merge keeps fields it never set: take them out before it restores.
		kubectl(t, "-n", localcluster.FlowauthNamespace, "patch", "deployment", "flowauth", "--type=json", "-p",
			`[{"op":"remove","path":"/spec/template/spec/securityContext/fsGroup"},{"op":"remove","path":"/spec/template/spec/containers/0/securityContext/runAsUser"}]`)
	})
	kubectl(t, "-n", localcluster.FlowauthNamespace, "rollout", "status", "deployment/flowauth", "--timeout=3m")

	// The replaced replicas' processes may outlive the rollout by their grace period.
	var pids []int
	localcluster.Eventually(t, 90*time.Second, "only the new replicas' webhook processes", func() (bool, string) {
		pids = webhookProcesses(t)
		var uids []string
		for _, pid := range pids {
			uids = append(uids, strings.Fields(localcluster.ProcStatus(pid, "Uid") + " ?")[0])
		}
		return len(pids) > 0 && !slices.ContainsFunc(uids, func(u string) bool { return u != strconv.Itoa(uid) }), fmt.Sprintf("pids %v, uids %v", pids, uids)
	})
	for _, pid := range pids {
		uids := strings.Fields(localcluster.ProcStatus(pid, "Uid"))
		groups := strings.Fields(localcluster.ProcStatus(pid, "Groups"))
		gids := strings.Fields(localcluster.ProcStatus(pid, "Gid"))
		if len(uids) == 0 || uids[0] != strconv.Itoa(uid) || len(gids) == 0 || gids[0] != "0" || !slices.Contains(groups, strconv.Itoa(uid)) {
			t.Errorf("webhook pid %d runs as uid %v gid %v groups %v; want uid %d, gid 0 and the fsGroup %d", pid, uids, gids, groups, uid, uid)
		}
		mounts, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "mountinfo"))
		if err != nil {
			t.Fatal(err)
		}
		if !rootIsReadOnly(string(mounts)) {
			t.Errorf("webhook pid %d: its root filesystem is writable", pid)
		}
	}
	_, err := cluster.CreateFlowRun(context.Background(), ns, "uid")
	if err != nil {
		t.Fatalf("a flow run was refused with the webhook under uid %d: %v", uid, err)
	}
}

// rootIsReadOnly reads a process's mountinfo: is the mount at / read-only?
func rootIsReadOnly(mountinfo string) bool {
	for _, line := range strings.Split(mountinfo, "\n") {
		f := strings.Fields(line)
		if len(f) > 5 && f[4] == "/" {
			return strings.HasPrefix(f[5], "ro,") || f[5] == "ro"
		}
	}
	return false
}
