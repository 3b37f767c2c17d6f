// Package multinode is the node suite's multi-node part: a local cluster of three nodes (each a
// kubelet with its own containerd, state and pod range) with flowauth installed by its chart,
// where replicas spread, a node is drained under a stream of flow runs, and a node is lost.
package multinode

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowauth/flowauth/test/localcluster"
)

var (
	root       string
	cluster    *localcluster.Cluster
	skipReason string
)

func TestMain(m *testing.M) { os.Exit(runSuite(m)) }

func runSuite(m *testing.M) int {
	root, _ = filepath.Abs("../../..")
	start := time.Now()
	c, skip, done, err := localcluster.StartForSuite("nodes", localcluster.Options{RepoRoot: root, Nodes: 3, Log: os.Stderr})
	if err != nil {
		fmt.Fprintln(os.Stderr, "multinode: FAIL:", err)
		return 1
	}
	cluster, skipReason = c, skip
	if skipReason != "" {
		return m.Run()
	}
	defer done()
	fmt.Fprintf(os.Stderr, "multinode: %d nodes up in %s\n", len(cluster.Nodes()), time.Since(start).Round(time.Millisecond))
	if err := cluster.InstallFlowauth(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "multinode:", err)
		return 1
	}
	code := m.Run()
	if code != 0 {
		out, _, _ := cluster.Kubectl(context.Background(), "get", "nodes,pods", "-A", "-o", "wide")
		fmt.Fprintln(os.Stderr, out)
	}
	return code
}

func needNodes(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
}

func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	return cluster.MustKubectl(t, args...)
}

// replicas are the webhook's pods: name, node and address, of those Running and not terminating.
type replica struct{ name, node, ip string }

func replicas(t *testing.T) []replica {
	t.Helper()
	out := kubectl(t, "-n", localcluster.FlowauthNamespace, "get", "pods", "-l", "app.kubernetes.io/name=flowauth",
		"--field-selector=status.phase=Running", "-o", `jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName} {.status.podIP} {.metadata.deletionTimestamp}{"\n"}{end}`)
	var rs []replica
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		// Not those terminating (a fourth field, their deletion time).
		if f := strings.Fields(line); len(f) == 3 {
			rs = append(rs, replica{f[0], f[1], f[2]})
		}
	}
	return rs
}

// helmUpgrade sets chart values on the release and waits for the rollout.
func helmUpgrade(t *testing.T, set ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := cluster.UpgradeFlowauth(ctx, set...); err != nil {
		t.Fatal(err)
	}
}
