package node

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/utils/ptr"

	"github.com/flowauth/flowauth/test/localcluster"
)

// TestPolicyModeRunsAFlowWithNoFlowauthPod (issue 31): `kubectl flowauth policy | kubectl apply
// --server-side -f -`, for namespaces of a label of its own, and flowauth's Deployment scaled to
// nothing: a `kubectl apply`-ed example flow-run Job still completes on the node, its boto3 and
// google-auth finding the Secrets' values, and so does a Prefect 3 flow run through the real
// worker (issue 30's "each admission mode"). The API server injected the pods itself.
func TestPolicyModeRunsAFlowWithNoFlowauthPod(t *testing.T) {
	needNode(t)
	ctx := context.Background()
	cmd := exec.CommandContext(ctx, "go", "run", "./cmd/kubectl-flowauth", "policy", "--name", "flowauth-policy-mode",
		"--namespace-selector", "flowauth.io/policy-mode=enabled")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubectl flowauth policy: %v", err)
	}
	file := filepath.Join(t.TempDir(), "policies.yaml")
	if err := os.WriteFile(file, out, 0o600); err != nil {
		t.Fatal(err)
	}
	kubectl(t, "apply", "--server-side", "-f", file)
	t.Cleanup(func() { kubectl(t, "delete", "-f", file) })

	ns := newNamespace(t, "policy-mode")
	kubectl(t, "label", "namespace", ns, "flowauth.io/injection-", "flowauth.io/policy-mode=enabled")
	creds := newCredentials(t)
	createSecrets(t, ns, creds)

	replicas := kubectl(t, "-n", localcluster.FlowauthNamespace, "get", "deployment", "flowauth", "-o", "jsonpath={.spec.replicas}")
	kubectl(t, "-n", localcluster.FlowauthNamespace, "scale", "deployment", "flowauth", "--replicas=0")
	kubectl(t, "-n", localcluster.FlowauthNamespace, "wait", "--for=delete", "pod", "-l", "app.kubernetes.io/name=flowauth", "--timeout=2m")
	t.Cleanup(func() {
		kubectl(t, "-n", localcluster.FlowauthNamespace, "scale", "deployment", "flowauth", "--replicas="+replicas)
		kubectl(t, "-n", localcluster.FlowauthNamespace, "rollout", "status", "deployment/flowauth", "--timeout=3m")
	})
	if pods := kubectl(t, "get", "pods", "-A", "-l", "app.kubernetes.io/name=flowauth", "-o", "name"); pods != "" {
		t.Fatalf("flowauth pods still run: %s", pods)
	}

	// The API server loads policies a moment after they exist: apply until the Job is injected.
	job := exampleJob(t, "prefect1-flow-run-job.yaml", "AWS_CREDENTIALS", "GCP_CREDENTIALS")
	start := time.Now()
	deadline := time.Now().Add(30 * time.Second)
	for {
		apply(t, ns, job)
		pod, err := cluster.WaitForJobPod(ctx, ns, job.Name)
		if err != nil {
			t.Fatal(err)
		}
		if pod.Annotations["flowauth.io/status"] != "" {
			t.Logf("stored pod: flowauth.io/status: %s", pod.Annotations["flowauth.io/status"])
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the policies did not inject the flow-run pod within 30 s")
		}
		kubectl(t, "-n", ns, "delete", "job", job.Name, "--wait")
		time.Sleep(time.Second)
	}
	log := waitJob(t, ns, job.Name)["flow"]
	t.Logf("kubectl apply to Complete with no flowauth pod: %s\n%s", time.Since(start).Round(time.Millisecond), log)
	requireFinding(t, log, "AWS_CREDENTIALS", "boto3 resolved credentials from env: access key "+digest(creds.AWSAccessKey)+", secret key "+digest(creds.AWSSecretKey))
	requireFinding(t, log, "GCP_CREDENTIALS", "google-auth loaded Credentials from "+gcpKeyPath+": file "+digest(string(creds.GCPKey)))
	requireFinding(t, log, "AWS_CREDENTIALS", "prefect PREFECT__CONTEXT__SECRETS__AWS_CREDENTIALS__ACCESS_KEY "+digest(creds.AWSAccessKey))

	// And a Prefect 3 flow run, through the real worker, in the same namespace.
	run, logs, took := runFlow(t, ns, 4*time.Minute, nil)
	t.Logf("Prefect 3 deployment run to %s in %s with no flowauth pod", run.State.Name, took.Round(time.Millisecond))
	requireCompleted(t, run, logs,
		"AWS_CREDENTIALS found by prefect_aws.AwsCredentials(): boto3 credentials from env, access key "+digest(creds.AWSAccessKey),
		"GCP_CREDENTIALS found by prefect_gcp.GcpCredentials(): Credentials, client_email "+digest(creds.GCPClientEmail),
		"GITHUB_ACCESS_TOKEN found by env GITHUB_ACCESS_TOKEN "+digest(creds.GitHubToken))

	// What a user sees of a refusal. A Job the policies would refuse the pods of is refused
	// itself (ValidatingAdmissionPolicy flowauth-policy-mode-refuse-jobs): Prefect shows the run
	// Crashed with flowauth's message, as in webhook mode.
	refusing := newNamespace(t, "policy-refusals")
	kubectl(t, "label", "namespace", refusing, "flowauth.io/injection-", "flowauth.io/policy-mode=enabled")
	createSecrets(t, refusing, creds)
	kubectl(t, "annotate", "namespace", refusing, "flowauth.io/allowed-secrets=GITHUB_ACCESS_TOKEN")
	requireCrashed(t, refusing, nil, "flowauth: namespace \""+refusing+"\" does not allow AWS_CREDENTIALS", "flowauth.io/allowed-secrets")

	// A pod refused when its Job was not (the allow-list came after the Job, which waited
	// suspended, as under Kueue): the Job controller's FailedCreate Event on the Job carries the
	// policy's message.
	held := exampleJob(t, "prefect1-flow-run-job.yaml", "AWS_CREDENTIALS", "GCP_CREDENTIALS")
	held.Name = "held-flow-run"
	held.Spec.Suspend = ptr.To(true)
	free := newNamespace(t, "policy-failedcreate")
	kubectl(t, "label", "namespace", free, "flowauth.io/injection-", "flowauth.io/policy-mode=enabled")
	apply(t, free, held)
	kubectl(t, "annotate", "namespace", free, "flowauth.io/allowed-secrets=GITHUB_ACCESS_TOKEN")
	kubectl(t, "-n", free, "patch", "job", held.Name, "--type=merge", "-p", `{"spec":{"suspend":false}}`)
	var message string
	localcluster.Eventually(t, time.Minute, "a FailedCreate Event on the Job", func() (bool, string) {
		message = kubectl(t, "-n", free, "get", "events", "--field-selector", "involvedObject.kind=Job,involvedObject.name="+held.Name+",reason=FailedCreate",
			"-o", "jsonpath={.items[0].message}")
		return message != "", "no FailedCreate yet"
	})
	t.Logf("kubectl get events -n %s: FailedCreate: %s", free, message)
	for _, want := range []string{"flowauth-policy-mode-refuse", "flowauth: namespace \"" + free + "\" does not allow AWS_CREDENTIALS from its default Secret \"aws-credentials\""} {
		if !strings.Contains(message, want) {
			t.Errorf("the Job's FailedCreate says %q; want %q", message, want)
		}
	}
}
