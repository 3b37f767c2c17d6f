package node

import (
	"context"
	"fmt"
	"os"
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
	if err := p.CreateWorkPool(ctx, prefectPool, prefect3.image, ""); err != nil {
		return err
	}
	if prefect3.project, err = p.Deploy(ctx, root); err != nil {
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
// the namespace), its flow checking names (all the deployment declares if none), and waits until Prefect says it ended, or timeout. It returns the run and its
// logs as the Prefect API has them.
func runFlow(t *testing.T, ns string, timeout time.Duration, jobVariables map[string]any, names ...string) (localcluster.FlowRun, []string, time.Duration) {
	t.Helper()
	p := startPrefect(t)
	ctx := context.Background()
	vars := map[string]any{"namespace": ns}
	for k, v := range jobVariables {
		vars[k] = v
	}
	start := time.Now()
	var params map[string]any
	if len(names) > 0 {
		params = map[string]any{"names": names}
	}
	id, err := p.CreateFlowRun(ctx, prefect3.project, prefectDeployment, vars, params)
	if err != nil {
		t.Fatal(err)
	}
	run, waitErr := p.WaitFlowRun(ctx, id, timeout)
	took := time.Since(start)
	logs := flowRunLogs(t, p, id, run)
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
	t.Logf("deployment run to %s in %s", run.State.Name, took.Round(time.Millisecond))
	// The worker copies its own Prefect settings into the pod: none of this machine's paths.
	if env := kubectl(t, "-n", ns, "get", "jobs", "-l", "prefect.io/flow-run-id="+run.ID, "-o", "jsonpath={.items[0].spec.template.spec.containers[0].env}"); strings.Contains(env, "PREFECT_HOME") || !strings.Contains(env, "PREFECT_API_URL") {
		t.Errorf("the flow run's env, as the worker wrote it: %s", env)
	}
	requireCompleted(t, run, logs,
		"AWS_CREDENTIALS found by prefect_aws.AwsCredentials(): boto3 credentials from env, access key "+digest(creds.AWSAccessKey)+", secret key "+digest(creds.AWSSecretKey),
		"GCP_CREDENTIALS found by prefect_gcp.GcpCredentials(): Credentials, client_email "+digest(creds.GCPClientEmail)+", project "+digest(creds.GCPProject),
		"GITHUB_ACCESS_TOKEN found by env GITHUB_ACCESS_TOKEN "+digest(creds.GitHubToken))
}

// TestPrefect3Variants: the ways teams run it still give the flow its credentials: an
// override of a Secret through job variables, and a worker that moves plain env into a per-Job
// Secret (PREFECT_INTEGRATIONS_KUBERNETES_WORKER_STORE_ENV_AS_SECRET, read through envFrom).
func TestPrefect3Variants(t *testing.T) {
	startPrefect(t)
	ns := newNamespace(t, "prefect3-variants")
	creds := newCredentials(t)
	createSecrets(t, ns, creds)
	team := newCredentials(t)
	kubectl(t, "-n", ns, "create", "secret", "generic", "team-a-aws",
		"--from-literal=ACCESS_KEY="+team.AWSAccessKey, "--from-literal=SECRET_ACCESS_KEY="+team.AWSSecretKey)

	t.Run("an override through job variables", func(t *testing.T) {
		run, logs, _ := runFlow(t, ns, 3*time.Minute, map[string]any{"annotations": map[string]string{
			"flowauth.io/secrets": "AWS_CREDENTIALS", "secret.flowauth.io/AWS_CREDENTIALS": "team-a-aws",
		}}, "AWS_CREDENTIALS")
		requireCompleted(t, run, logs, "AWS_CREDENTIALS found by prefect_aws.AwsCredentials(): boto3 credentials from env, access key "+digest(team.AWSAccessKey))
	})

	t.Run("store env as secret", func(t *testing.T) {
		// Its own pool and worker: the setting is the worker's.
		p := startPrefect(t)
		ctx := context.Background()
		pool := prefectPool + "-env-secret"
		if err := p.CreateWorkPool(ctx, pool, prefect3.image, ""); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Deploy(ctx, root, "credentials_flow.py:credentials", "--name", "env-secret", "--pool", pool); err != nil {
			t.Fatal(err)
		}
		worker := prefectWorker + "-env-secret"
		if err := p.StartWorker(ctx, worker, pool, cluster.Kubeconfig, "PREFECT_INTEGRATIONS_KUBERNETES_WORKER_STORE_ENV_AS_SECRET=true"); err != nil {
			t.Fatal(err)
		}
		defer p.StopWorker(worker)
		id, err := p.CreateFlowRun(ctx, prefect3.project, "flowauth-credentials/env-secret", map[string]any{
			"namespace": ns, "annotations": map[string]string{"flowauth.io/secrets": "AWS_CREDENTIALS, GITHUB_ACCESS_TOKEN"},
			"env": map[string]string{"AWS_EC2_METADATA_DISABLED": "true", "FLOW_SETTING": "plain"},
		}, map[string]any{"names": []string{"AWS_CREDENTIALS", "GITHUB_ACCESS_TOKEN"}})
		if err != nil {
			t.Fatal(err)
		}
		run, err := p.WaitFlowRun(ctx, id, 3*time.Minute)
		logs := flowRunLogs(t, p, id, run)
		if err != nil {
			t.Fatalf("%v\n%s\nthe worker:\n%s", err, strings.Join(logs, "\n"), localcluster.LastLines(p.Log(worker), 30))
		}
		requireCompleted(t, run, logs, "AWS_CREDENTIALS found by prefect_aws.AwsCredentials(): boto3 credentials from env, access key "+digest(creds.AWSAccessKey),
			"GITHUB_ACCESS_TOKEN found by env GITHUB_ACCESS_TOKEN "+digest(creds.GitHubToken))
		// The worker did move the env into a Secret: the Job's container reads it through envFrom.
		out := kubectl(t, "-n", ns, "get", "jobs", "-l", "prefect.io/flow-run-id="+id, "-o", "jsonpath={.items[0].spec.template.spec.containers[0].envFrom}")
		if !strings.Contains(out, "secretRef") {
			t.Errorf("with store-env-as-secret, the Job's container has no envFrom Secret: %s", out)
		}
	})
}

// requireCompleted fails unless the run Completed and its logs hold each of want.
func requireCompleted(t *testing.T, run localcluster.FlowRun, logs []string, want ...string) {
	t.Helper()
	all := strings.Join(logs, "\n")
	if run.State.Type != "COMPLETED" {
		t.Fatalf("the flow run ended %s (%s): %q\n%s", run.State.Name, run.State.Type, run.State.Message, all)
	}
	for _, w := range want {
		if !strings.Contains(all, w) {
			t.Errorf("the run's logs lack %q:\n%s", w, all)
		}
	}
}

// flowRunLogs reads the run's logs, waiting (up to 30 s) for a finished run's last batch.
func flowRunLogs(t *testing.T, p *localcluster.Prefect, id string, run localcluster.FlowRun) []string {
	t.Helper()
	ctx := context.Background()
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
	return logs
}

// TestPrefect3FailuresShowInPrefect: when flowauth refuses a flow run, or cannot be reached, the
// Prefect user sees it where they look, in Prefect: the run ends Crashed within a minute with
// flowauth's message (or, unreachable, the API server's naming flowauth's webhook) in its state,
// never Pending for ever. The worker's Job is refused at creation, before any pod exists.
// requireCrashed runs the deployment in ns and requires Prefect to show it Crashed within a
// minute, its message holding each of want, and no pod left behind.
func requireCrashed(t *testing.T, ns string, jobVariables map[string]any, want ...string) {
	t.Helper()
	run, logs, took := runFlow(t, ns, time.Minute, jobVariables)
	t.Logf("Prefect shows %s (%s) %s after the run was created: %q", run.State.Name, run.State.Type, took.Round(100*time.Millisecond), run.State.Message)
	if run.State.Type != "CRASHED" {
		t.Fatalf("the run is %s (%s) after %s, want Crashed: %q\n%s", run.State.Name, run.State.Type, took.Round(time.Second), run.State.Message, strings.Join(logs, "\n"))
	}
	for _, w := range want {
		if !strings.Contains(run.State.Message, w) {
			t.Errorf("the Crashed state's message lacks %q: %q", w, run.State.Message)
		}
	}
	if out := kubectl(t, "-n", ns, "get", "pods", "-o", "name"); out != "" {
		t.Errorf("a refused run left pods: %s", out)
	}
}

func TestPrefect3FailuresShowInPrefect(t *testing.T) {
	startPrefect(t)
	creds := newCredentials(t)
	crashes := requireCrashed

	t.Run("a Secret missing (key lookup, missingSecret=deny)", func(t *testing.T) {
		helmUpgrade(t, []string{"secretLookup=" + orDefault(helmValue(t, "secretLookup"), "none"), "missingSecret=" + orDefault(helmValue(t, "missingSecret"), "warn")},
			"secretLookup=keys", "missingSecret=deny")
		ns := newNamespace(t, "prefect3-missing")
		kubectl(t, "-n", ns, "create", "secret", "generic", "github-access-token", "--from-literal=token="+creds.GitHubToken)
		crashes(t, ns, map[string]any{"annotations": map[string]string{"flowauth.io/secrets": "AWS_CREDENTIALS, GITHUB_ACCESS_TOKEN"}},
			`Secret "aws-credentials" not found`, "kubectl create secret generic aws-credentials -n "+ns)
	})

	t.Run("a name the allow-list refuses", func(t *testing.T) {
		ns := newNamespace(t, "prefect3-allowlist")
		createSecrets(t, ns, creds)
		kubectl(t, "annotate", "namespace", ns, "flowauth.io/allowed-secrets=GITHUB_ACCESS_TOKEN")
		crashes(t, ns, nil, "AWS_CREDENTIALS", "flowauth.io/allowed-secrets")
	})

	t.Run("an override the allow-list refuses", func(t *testing.T) {
		ns := newNamespace(t, "prefect3-override")
		createSecrets(t, ns, creds)
		kubectl(t, "annotate", "namespace", ns, "flowauth.io/allowed-secrets=AWS_CREDENTIALS, GITHUB_ACCESS_TOKEN")
		crashes(t, ns, map[string]any{"annotations": map[string]string{
			"flowauth.io/secrets": "AWS_CREDENTIALS", "secret.flowauth.io/AWS_CREDENTIALS": "kube-system-token",
		}}, `"kube-system-token"`, "flowauth.io/allowed-secrets")
	})

	t.Run("flowauth unreachable", func(t *testing.T) {
		ns := newNamespace(t, "prefect3-unreachable")
		createSecrets(t, ns, creds)
		replicas := kubectl(t, "-n", localcluster.FlowauthNamespace, "get", "deployment", "flowauth", "-o", "jsonpath={.spec.replicas}")
		kubectl(t, "-n", localcluster.FlowauthNamespace, "scale", "deployment", "flowauth", "--replicas=0")
		kubectl(t, "-n", localcluster.FlowauthNamespace, "wait", "--for=delete", "pod", "-l", "app.kubernetes.io/name=flowauth", "--timeout=2m")
		defer func() {
			kubectl(t, "-n", localcluster.FlowauthNamespace, "scale", "deployment", "flowauth", "--replicas="+replicas)
			kubectl(t, "-n", localcluster.FlowauthNamespace, "rollout", "status", "deployment/flowauth", "--timeout=3m")
		}()
		crashes(t, ns, nil, `failed calling webhook "jobs.flowauth.io"`)
	})
}
