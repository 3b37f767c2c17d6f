package node

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flowauth/flowauth/test/docs"
	"github.com/flowauth/flowauth/test/localcluster"
)

// TestDocsRunAsWritten (issue 32): every shell block of the user pages marked `<!-- docs-test: run
// -->` runs as written against the node cluster (flowauth installed by its chart), in order, in a
// shell with kubectl and helm on the PATH. Two things are substituted, as a reader's own would be:
// the namespace `flows` becomes a fresh one per page (created and opted in first when the page's
// run blocks do not create it: an earlier step made it), and `examples/` is the repository's. A
// GCP key file `key.json`, a secret map `secret-map.yaml` and the plugin on the PATH are at hand. What the page then says the cluster holds is
// checked: README's stored flow-run pod carries the status line README shows.
func TestDocsRunAsWritten(t *testing.T) {
	needNode(t)
	work := t.TempDir()
	key, err := localcluster.ServiceAccountKey("flowauth-docs", "docs@flowauth-docs.iam.gserviceaccount.com")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "key.json"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	// What a reader has at hand: the plugin on the PATH, a secret map of their own.
	build := exec.CommandContext(context.Background(), "go", "build", "-o", filepath.Join(work, "bin", "kubectl-flowauth"), "./cmd/kubectl-flowauth")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the plugin: %v\n%s", err, out)
	}
	secretMap := "apiVersion: flowauth.io/v1alpha1\nkind: SecretMap\nsecrets:\n  DBT_CLOUD_TOKEN:\n    shape: string\n    keys: [{name: token}]\n"
	if err := os.WriteFile(filepath.Join(work, "secret-map.yaml"), []byte(secretMap), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, page := range docs.Pages {
		blocks, err := docs.Blocks(filepath.Join(root, page))
		if err != nil {
			t.Fatal(err)
		}
		ns := fmt.Sprintf("docs-%d", time.Now().UnixNano()%1_000_000)
		t.Cleanup(func() {
			_, _, _ = cluster.Kubectl(context.Background(), "delete", "namespace", ns, "--ignore-not-found", "--wait=false")
		})
		flows := regexp.MustCompile(`\bflows\b`)
		// A page that starts from an opted-in namespace (an earlier page, or its install step,
		// made it) gets one.
		creates, labels := false, false
		for _, b := range blocks {
			creates = creates || (b.Run && strings.Contains(b.Text, "create namespace"))
			labels = labels || (b.Run && strings.Contains(b.Text, "label namespace"))
		}
		if !creates && slices.ContainsFunc(blocks, func(b docs.Block) bool { return b.Run }) {
			kubectl(t, "create", "namespace", ns)
			if !labels {
				kubectl(t, "label", "namespace", ns, "flowauth.io/injection=enabled")
			}
		}
		ran := 0
		var output strings.Builder
		for _, b := range blocks {
			if !b.Run {
				continue
			}
			script := strings.ReplaceAll(flows.ReplaceAllString(b.Text, ns), "examples/", filepath.Join(root, "examples")+"/")
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			// A runbook's diagnostics may find nothing (grep's status 1): only an error message
			// fails them. Any other block fails at its first failing command.
			shell := []string{"-euo", "pipefail", "-c", script}
			if b.Diagnostic {
				shell = []string{"-u", "-c", script}
			}
			cmd := exec.CommandContext(ctx, "bash", shell...)
			cmd.Dir = work
			cmd.Env = append(os.Environ(), "KUBECONFIG="+cluster.Kubeconfig, "PROBE_IMAGE="+cluster.Images.Probe,
				"PATH="+filepath.Join(work, "bin")+":"+filepath.Join(root, "bin", "k8s")+":"+filepath.Join(root, "bin")+":"+os.Getenv("PATH"))
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			cancel()
			out := []byte(stdout.String() + stderr.String())
			if b.Diagnostic {
				// grep's status says whether it found something; kubectl's errors go to stderr.
				err = nil
				if stderr.Len() > 0 {
					err = fmt.Errorf("it printed an error")
				}
			}
			if err != nil {
				t.Fatalf("%s:%d, run as written (namespace %s): %v\n%s\n%s", page, b.Line, ns, err, script, out)
			}
			t.Logf("%s:%d ran:\n%s", page, b.Line, out)
			output.Write(out)
			ran++
		}
		switch page {
		case "README.md":
			checkReadmesPod(t, ns)
		case "docs/getting-started.md":
			checkShownOutput(t, page, output.String())
		}
		t.Logf("%s: %d blocks run as written", page, ran)
	}
}

// checkShownOutput: each line the page shows a flow run printing ("ok      NAME  ...", values as
// "sha256:...") is in what the page's commands printed, and so is the status it says they print.
func checkShownOutput(t *testing.T, page, got string) {
	t.Helper()
	text, err := os.ReadFile(filepath.Join(root, page))
	if err != nil {
		t.Fatal(err)
	}
	shown := regexp.MustCompile(`(?m)^ok +\S+ .*$`).FindAllString(string(text), -1)
	if len(shown) == 0 {
		t.Fatalf("%s shows no flow-run output", page)
	}
	for _, line := range shown {
		want := regexp.MustCompile(strings.ReplaceAll(regexp.QuoteMeta(line), `sha256:\.\.\.`, `sha256:[0-9a-f]+`))
		if !want.MatchString(got) {
			t.Errorf("%s shows %q; its commands printed:\n%s", page, line, got)
		}
	}
	if status := regexp.MustCompile("prints `(injected=[A-Z_,]+)`").FindStringSubmatch(string(text)); status == nil || !strings.Contains(got, status[1]+"\n") {
		t.Errorf("%s says the pod's status is printed as %v; its commands printed:\n%s", page, status, got)
	}
}

// checkReadmesPod: README's "In 30 seconds" says its Job's pod is stored with a status line;
// the pod the block made carries it.
func checkReadmesPod(t *testing.T, ns string) {
	t.Helper()
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^flowauth\.io/status: (\S+)$`).FindSubmatch(readme)
	if m == nil {
		t.Fatal("README shows no flowauth.io/status line")
	}
	pod, err := cluster.WaitForJobPod(context.Background(), ns, exampleJobName(t))
	if err != nil {
		t.Fatal(err)
	}
	if got := pod.Annotations["flowauth.io/status"]; got != string(m[1]) {
		t.Errorf("README says the pod is stored with flowauth.io/status: %s; it is stored with %q", m[1], got)
	}
}

// exampleJobName is the name of examples/prefect1-flow-run-job.yaml's Job.
func exampleJobName(t *testing.T) string {
	t.Helper()
	return exampleJob(t, "prefect1-flow-run-job.yaml").Name
}
