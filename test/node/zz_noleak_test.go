package node

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestNoSecretValueReachesAnyLog runs last (its file sorts last): every value this suite stored
// in a Secret is looked for in the kubelet's and containerd's logs, every container's log (the
// probes', the Prefect flow runs' and flowauth's own), what the API server holds of pods, Jobs and
// Events, and everything the Prefect server and workers wrote (their logs and the server's
// database, which holds the flow runs' logs and states).
func TestNoSecretValueReachesAnyLog(t *testing.T) {
	needNode(t)
	if len(allCredentials) == 0 {
		t.Fatal("no test stored credentials: nothing to look for")
	}
	outputs := map[string]string{
		"pods":   kubectl(t, "get", "pods", "-A", "-o", "yaml"),
		"jobs":   kubectl(t, "get", "jobs", "-A", "-o", "yaml"),
		"events": kubectl(t, "get", "events", "-A", "-o", "yaml"),
	}
	logs, err := cluster.NodeLogs()
	if err != nil {
		t.Fatal(err)
	}
	if prefect3.p != nil {
		dir := os.DirFS(prefect3.p.Dir)
		err := fs.WalkDir(dir, ".", func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := fs.ReadFile(dir, path)
			outputs[filepath.Join(prefect3.p.Dir, path)] = string(b)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	containerLogs := 0
	for _, path := range logs {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		outputs[path] = string(b)
		if strings.Contains(path, "/pod-logs/") {
			containerLogs++
		}
	}
	for _, want := range []string{"kubelet.log", "containerd.log"} {
		if !slices.ContainsFunc(logs, func(p string) bool { return strings.HasSuffix(p, "/"+want) }) {
			t.Errorf("no %s to scan among %v", want, logs)
		}
	}
	if containerLogs < 4 {
		t.Errorf("only %d container logs to scan", containerLogs)
	}
	for what, out := range outputs {
		values := slices.Clone(otherSecretValues)
		for _, c := range allCredentials {
			values = append(values, c.values()...)
		}
		for _, value := range values {
			if strings.Contains(out, value) {
				t.Errorf("a Secret value (%d characters) appears in %s", len(value), what)
			}
		}
	}
}

// otherSecretValues are values tests stored in Secrets outside credentials.
var otherSecretValues []string
