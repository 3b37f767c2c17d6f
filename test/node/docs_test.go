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
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flowauth/flowauth/test/docs"
	"github.com/flowauth/flowauth/test/localcluster"
)

// TestDocsRunAsWritten (issue 32): every shell block of the user pages marked `<!-- docs-test: run
// -->` runs as written against the node cluster (flowauth installed by its chart), in order, in a
// shell with kubectl and helm on the PATH, in a folder holding a copy of the repository's examples/.
// Two things are substituted, as a reader's own would be: the namespace `flows` becomes a fresh one
// per page (created and opted in first when the page's run blocks do not create it: an earlier step
// made it), and FLOW_RUN_IMAGE is the Prefect flow-run image. A GCP key file `key.json`, a secret
// map `secret-map.yaml` and the plugin on the PATH are at hand; a page whose blocks run the prefect
// CLI gets a Prefect server of its own and the pinned prefect on the PATH, and a block marked `run
// in the background` (a worker) runs until the page's last block has. What the page then says is
// checked: README's stored flow-run pod carries the status line README shows, Getting started's
// and Prefect 3's commands print what the pages show.
func TestDocsRunAsWritten(t *testing.T) {
	needNode(t)
	r := newReader(t)
	for _, page := range docs.Pages {
		output, ns, ran := r.runPage(t, page)
		switch page {
		case "README.md":
			checkReadmesPod(t, ns)
		case "docs/getting-started.md":
			checkShownOutput(t, page, output)
		case "docs/prefect3.md":
			checkLastLineShown(t, page, output)
		}
		t.Logf("%s: %d blocks run as written", page, ran)
	}
}

// reader is what a reader of the docs has at hand: a folder with the plugin on the PATH, a GCP
// key file key.json, a secret map secret-map.yaml and a copy of examples/.
type reader struct{ work string }

func newReader(t *testing.T) reader {
	t.Helper()
	work := t.TempDir()
	key, err := localcluster.ServiceAccountKey("flowauth-docs", "docs@flowauth-docs.iam.gserviceaccount.com")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "key.json"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	build := exec.CommandContext(context.Background(), "go", "build", "-o", filepath.Join(work, "bin", "kubectl-flowauth"), "./cmd/kubectl-flowauth")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the plugin: %v\n%s", err, out)
	}
	secretMap := "apiVersion: flowauth.io/v1alpha1\nkind: SecretMap\nsecrets:\n  DBT_CLOUD_TOKEN:\n    shape: string\n    keys: [{name: token}]\n"
	if err := os.WriteFile(filepath.Join(work, "secret-map.yaml"), []byte(secretMap), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.CommandContext(context.Background(), "cp", "-r", filepath.Join(root, "examples"), filepath.Join(work, "examples")).CombinedOutput(); err != nil {
		t.Fatalf("copying examples/: %v\n%s", err, out)
	}
	return reader{work: work}
}

var (
	prefectCommand = regexp.MustCompile(`(?m)^\s*prefect\s`)
	flowsNamespace = regexp.MustCompile(`\bflows\b`)
)

// runPage runs page's blocks marked to run, in order, as TestDocsRunAsWritten says, in a fresh
// namespace; it returns what they printed, the namespace and how many ran.
func (r reader) runPage(t *testing.T, page string) (string, string, int) {
	t.Helper()
	blocks, err := docs.Blocks(filepath.Join(root, page))
	if err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "KUBECONFIG="+cluster.Kubeconfig, "PROBE_IMAGE="+cluster.Images.Probe)
	path := filepath.Join(r.work, "bin") + ":" + filepath.Join(root, "bin", "k8s") + ":" + filepath.Join(root, "bin") + ":" + os.Getenv("PATH")
	flowRunImage := ""
	if slices.ContainsFunc(blocks, func(b docs.Block) bool { return b.Run && prefectCommand.MatchString(b.Text) }) {
		p, err := localcluster.StartPrefect(context.Background(), root, filepath.Join(r.work, "prefect-"+strings.TrimSuffix(filepath.Base(page), ".md")), localcluster.GatewayIP)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Stop)
		if flowRunImage, err = cluster.PrefectFlowRunImage(context.Background()); err != nil {
			t.Fatal(err)
		}
		for _, kv := range p.UserEnv() {
			if !strings.HasPrefix(kv, "PATH=") {
				env = append(env, kv)
			}
		}
		path = filepath.Join(localcluster.PrefectVenv(root), "bin") + ":" + path
	}
	env = append(env, "PATH="+path)
	var background []*exec.Cmd
	backgroundOut := &localcluster.SyncBuffer{}
	stopBackground := func() {
		for _, cmd := range background {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			_ = cmd.Wait()
		}
		background = nil
	}
	defer stopBackground()
	ns := fmt.Sprintf("docs-%d", time.Now().UnixNano()%1_000_000)
	t.Cleanup(func() {
		_, _, _ = cluster.Kubectl(context.Background(), "delete", "namespace", ns, "--ignore-not-found", "--wait=false")
	})
	// A page that starts from an opted-in namespace (an earlier page, or its install step, made
	// it) gets one.
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
		script := strings.ReplaceAll(flowsNamespace.ReplaceAllString(b.Text, ns), "FLOW_RUN_IMAGE", flowRunImage)
		if b.Background {
			cmd := exec.CommandContext(context.Background(), "bash", "-euo", "pipefail", "-c", script)
			cmd.Dir, cmd.Env = r.work, env
			cmd.Stdout, cmd.Stderr = backgroundOut, backgroundOut
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			background = append(background, cmd)
			ran++
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		// A runbook's diagnostics may find nothing (grep's status 1): only an error message
		// fails them. Any other block fails at its first failing command.
		shell := []string{"-euo", "pipefail", "-c", script}
		if b.Diagnostic {
			shell = []string{"-u", "-c", script}
		}
		cmd := exec.CommandContext(ctx, "bash", shell...)
		cmd.Dir, cmd.Env = r.work, env
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
			t.Fatalf("%s:%d, run as written (namespace %s): %v\n%s\n%s\nwhat runs in the background printed:\n%s", page, b.Line, ns, err, script, out, backgroundOut.String())
		}
		t.Logf("%s:%d ran:\n%s", page, b.Line, out)
		output.Write(out)
		ran++
	}
	return output.String(), ns, ran
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

// TestChartNotesRunAsWritten (issue 32): the commands `helm install` prints (the chart's
// NOTES.txt, as `helm get notes` gives them for the installed release) run as written, the
// namespace "flows" a fresh one, and the Secret they create is the one the annotation they show
// makes a pod get.
func TestChartNotesRunAsWritten(t *testing.T) {
	needNode(t)
	ctx := context.Background()
	notes, err := cluster.Helm(ctx, "get", "notes", "flowauth", "-n", localcluster.FlowauthNamespace)
	if err != nil {
		t.Fatal(err)
	}
	ns := newNamespace(t, "notes")
	kubectl(t, "label", "namespace", ns, "flowauth.io/injection-")
	var commands []string
	for _, line := range strings.Split(notes, "\n") {
		if c := strings.TrimSpace(line); strings.HasPrefix(c, "kubectl ") {
			commands = append(commands, regexp.MustCompile(`\bflows\b`).ReplaceAllString(c, ns))
		}
	}
	if len(commands) < 3 {
		t.Fatalf("the notes show %d kubectl commands, want the label, the Secret and the rollout:\n%s", len(commands), notes)
	}
	for _, c := range commands {
		cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", c)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+cluster.Kubeconfig, "PATH="+filepath.Join(root, "bin", "k8s")+":"+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s, as the notes print it: %v\n%s", c, err, out)
		}
		t.Logf("%s\n%s", c, out)
	}
	annotation := regexp.MustCompile(`flowauth\.io/secrets: (\S+)`).FindStringSubmatch(notes)
	if annotation == nil {
		t.Fatalf("the notes show no flowauth.io/secrets annotation:\n%s", notes)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "flow-run-", Namespace: ns, Annotations: map[string]string{"flowauth.io/secrets": annotation[1]}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "flow", Image: cluster.Images.Probe}}},
	}
	if err := cluster.Client.Create(ctx, pod, client.DryRunAll); err != nil {
		t.Fatal(err)
	}
	if pod.Annotations["flowauth.io/status"] != "injected="+annotation[1] {
		t.Errorf("a pod declaring %s in the namespace the notes set up is stored with status %q", annotation[1], pod.Annotations["flowauth.io/status"])
	}
}

// checkLastLineShown: the page shows what its last command ends with ("It ends with:" and a
// block), and its commands printed that.
func checkLastLineShown(t *testing.T, page, got string) {
	t.Helper()
	text, err := os.ReadFile(filepath.Join(root, page))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("It ends with:\n\n```\n(.+)\n```").FindSubmatch(text)
	if m == nil {
		t.Fatalf("%s shows no line its commands end with", page)
	}
	if !strings.Contains(got, string(m[1])) {
		t.Errorf("%s shows its commands ending with %q; they printed:\n%s", page, m[1], got)
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
