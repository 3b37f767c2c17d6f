package node

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowauth/flowauth/test/localcluster"
)

// Prefect 3 as teams run it, on the node: a real `prefect server start`, a work pool of type
// kubernetes made from the worker's own default base job template (only its image changed, as a
// platform team sets its flow-run image), examples/prefect3 deployed with `prefect deploy`, and a
// `prefect worker start --type kubernetes` that creates each flow run's Job. What the tests read
// is what Prefect's API says: the run's state and its logs.
const (
	prefectPool       = "flow-runs"
	prefectDeployment = "flowauth-credentials/credentials"
	prefectWorker     = "flowauth-worker"
)

// prefect3 is the suite's Prefect, started by the first test that needs it.
var prefect3 struct {
	once    sync.Once
	err     error
	p       *localcluster.Prefect
	project string // the deployed copy of examples/prefect3
	image   string
}

// startPrefect starts (once) the server, the pool, the deployment and the worker.
func startPrefect(t *testing.T) *localcluster.Prefect {
	t.Helper()
	needNode(t)
	prefect3.once.Do(func() { prefect3.err = setUpPrefect(context.Background()) })
	if prefect3.err != nil {
		t.Fatal(prefect3.err)
	}
	return prefect3.p
}

func setUpPrefect(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "flowauth-prefect-")
	if err != nil {
		return err
	}
	start := time.Now()
	p, err := localcluster.StartPrefect(ctx, root, dir, localcluster.GatewayIP)
	if err != nil {
		return err
	}
	prefect3.p = p
	if prefect3.image, err = cluster.PrefectFlowRunImage(ctx); err != nil {
		return err
	}
	// The worker's own default template, with the image a platform team gives its flow runs.
	out, err := p.Run(ctx, dir, "work-pool", "get-default-base-job-template", "--type", "kubernetes")
	if err != nil {
		return err
	}
	var template map[string]any
	if err := json.Unmarshal([]byte(out), &template); err != nil {
		return err
	}
	template["variables"].(map[string]any)["properties"].(map[string]any)["image"].(map[string]any)["default"] = prefect3.image
	b, err := json.Marshal(template)
	if err != nil {
		return err
	}
	file := filepath.Join(dir, "base-job-template.json")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		return err
	}
	if _, err := p.Run(ctx, dir, "work-pool", "create", prefectPool, "--type", "kubernetes", "--base-job-template", file); err != nil {
		return err
	}
	prefect3.project = filepath.Join(dir, "project")
	if out, err := exec.CommandContext(ctx, "cp", "-r", filepath.Join(root, "examples", "prefect3"), prefect3.project).CombinedOutput(); err != nil {
		return fmt.Errorf("cp: %w: %s", err, out)
	}
	if _, err := p.Run(ctx, prefect3.project, "--no-prompt", "deploy", "--all"); err != nil {
		return err
	}
	if err := p.StartWorker(ctx, prefectWorker, prefectPool, cluster.Kubeconfig); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "node: Prefect server, pool, deployment and worker up in %s\n", time.Since(start).Round(time.Millisecond))
	return nil
}

// stopPrefect ends what startPrefect started (the suite's teardown).
func stopPrefect() {
	if prefect3.p != nil {
		prefect3.p.Stop()
		_ = os.RemoveAll(prefect3.p.Dir)
	}
}

// runFlow starts a run of the example deployment in ns with the job variables given (besides
// the namespace) and waits until Prefect says it ended, or timeout. It returns the run and its
// logs as the Prefect API has them.
func runFlow(t *testing.T, ns string, timeout time.Duration, jobVariables map[string]any) (localcluster.FlowRun, []string, time.Duration) {
	t.Helper()
	p := startPrefect(t)
	ctx := context.Background()
	vars := map[string]any{"namespace": ns}
	for k, v := range jobVariables {
		vars[k] = v
	}
	start := time.Now()
	id, err := p.CreateFlowRun(ctx, prefect3.project, prefectDeployment, vars)
	if err != nil {
		t.Fatal(err)
	}
	run, waitErr := p.WaitFlowRun(ctx, id, timeout)
	took := time.Since(start)
	logs, err := p.Logs(ctx, id)
	// The flow run's own lines reach the API in batches, the last as its process exits, which is
	// after its final state: wait for the engine's closing line.
	for deadline := time.Now().Add(30 * time.Second); err == nil && (run.State.Type == "COMPLETED" || run.State.Type == "FAILED"); {
		if slices.ContainsFunc(logs, func(l string) bool { return strings.HasPrefix(l, "Finished in state") }) || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
		logs, err = p.Logs(ctx, id)
	}
	if err != nil {
		t.Fatal(err)
	}
	if waitErr != nil {
		t.Logf("flow run %s: %v\nits logs:\n%s\nthe worker:\n%s", id, waitErr, strings.Join(logs, "\n"), localcluster.LastLines(p.Log(prefectWorker), 40))
	}
	return run, logs, took
}

// TestPrefect3FlowRunCompletes: a deployment whose job variables carry flowauth.io/secrets
// runs through the real worker, and its flow's prefect-aws, prefect-gcp and environment find
// the Secrets' values (compared by digest in the run's logs in the Prefect API).
func TestPrefect3FlowRunCompletes(t *testing.T) {
	startPrefect(t)
	ns := newNamespace(t, "prefect3")
	creds := newCredentials(t)
	createSecrets(t, ns, creds)
	run, logs, took := runFlow(t, ns, 4*time.Minute, nil)
	if run.State.Type != "COMPLETED" {
		t.Fatalf("the flow run ended %s (%s): %q\n%s", run.State.Name, run.State.Type, run.State.Message, strings.Join(logs, "\n"))
	}
	t.Logf("deployment run to Completed in %s", took.Round(time.Millisecond))
	all := strings.Join(logs, "\n")
	for _, want := range []string{
		"AWS_CREDENTIALS found by prefect_aws.AwsCredentials(): boto3 credentials from env, access key " + digest(creds.AWSAccessKey) + ", secret key " + digest(creds.AWSSecretKey),
		"GCP_CREDENTIALS found by prefect_gcp.GcpCredentials(): Credentials, client_email " + digest(creds.GCPClientEmail) + ", project " + digest(creds.GCPProject),
		"GITHUB_ACCESS_TOKEN found by env GITHUB_ACCESS_TOKEN " + digest(creds.GitHubToken),
	} {
		if !strings.Contains(all, want) {
			t.Errorf("the run's logs lack %q:\n%s", want, all)
		}
	}
}
