// Command demo is `make demo`. As root it runs a one-node cluster (the control plane, containerd,
// kubelet, kube-proxy, kube-scheduler, a registry on 127.0.0.1), installs flowauth with its Helm
// chart from the registry's image and applies the example Secrets. Then, with -prefect 3 (the
// default), it runs Prefect 3 as docs/prefect3.md does: a Prefect server, a kubernetes work pool
// from the worker's default template, examples/prefect3 deployed, a worker, and a flow run whose
// prefect-aws and prefect-gcp find the credentials; with -prefect 1, it applies the Prefect 1
// flow-run Job with kubectl (its container replaced by the probe image). It waits for the flow
// run to complete on the node, and prints the injected pod and what the libraries found. Without root it
// says so and shows what the API server stores: a local control plane with the webhook binary
// registered over TLS, and the injected pod. Values are never printed, only names, references
// and digests. Everything stops on exit or Ctrl-C.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/yaml"

	"github.com/flowauth/flowauth/test/localcluster"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) { fmt.Printf("\n==> "+format+"\n", args...) }

func run() error {
	logf.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapcore.ErrorLevel))) // errors only
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	prefect := flag.String("prefect", "3", "which Prefect runs the flow: 3 (server, worker, deployment) or 1 (a flow-run Job applied with kubectl)")
	mode := flag.String("mode", "webhook", "how flowauth is installed: webhook, or policy (admission policies the API server runs itself, no flowauth pod)")
	flag.Parse()
	if *prefect != "3" && *prefect != "1" {
		return fmt.Errorf("-prefect %q: want 3 or 1", *prefect)
	}
	if *mode != "webhook" && *mode != "policy" {
		return fmt.Errorf("-mode %q: want webhook or policy", *mode)
	}
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		return onNode(ctx, root, *prefect, *mode)
	}
	step("not root: %v. Showing what the API server stores instead (run `sudo make demo` to see the flow run run)", localcluster.ErrNotRoot)
	work := filepath.Join(root, "bin", "demo")
	if err := os.MkdirAll(work, 0o750); err != nil {
		return err
	}

	step("starting etcd, kube-apiserver, kube-controller-manager (Job controller) and the flowauth webhook")
	c, err := localcluster.Start(ctx, localcluster.Options{RepoRoot: root, WorkDir: work})
	if err != nil {
		return err
	}
	defer func() {
		step("stopping everything")
		_ = c.Stop()
	}()
	fmt.Printf("kubeconfig: %s\n", c.Kubeconfig)

	for _, args := range [][]string{
		{"apply", "-f", "examples/namespace.yaml"},
		{"-n", "flows", "apply", "-f", "examples/secrets.yaml"},
		{"-n", "flows", "apply", "-f", "examples/prefect1-flow-run-job.yaml"},
	} {
		step("kubectl %s", strings.Join(args, " "))
		out, errOut, err := c.Kubectl(ctx, args...)
		fmt.Print(out, errOut)
		if err != nil {
			return err
		}
	}

	step("waiting for the Job controller's pod")
	pod, err := c.WaitForJobPod(ctx, "flows", "prefect-job-3c1b2a9f")
	if err != nil {
		return err
	}
	printPod(pod)
	return nil
}

// onNode is the demo on a real node: the flow run runs, and its libraries read the credentials.
func onNode(ctx context.Context, root, prefect, mode string) error {
	work, err := os.MkdirTemp("", "flowauth-demo-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(work) }()
	step("starting a one-node cluster: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd, kubelet, kube-proxy, and a registry on 127.0.0.1 with flowauth's images")
	start := time.Now()
	c, err := localcluster.Start(ctx, localcluster.Options{RepoRoot: root, WorkDir: work, Node: true})
	if err != nil {
		return err
	}
	defer func() {
		step("stopping everything and removing what the node put on this machine")
		if err := c.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "demo: teardown:", err)
		}
	}()
	fmt.Printf("up in %s; kubeconfig: %s\n", time.Since(start).Round(time.Millisecond), c.Kubeconfig)

	step("helm install flowauth charts/flowauth -n %s --set image.repository=%s --set admission.mode=%s --wait", localcluster.FlowauthNamespace, strings.TrimSuffix(c.Images.Webhook, ":"+localcluster.ImageTag), mode)
	start = time.Now()
	if err := c.InstallFlowauth(ctx, "admission.mode="+mode); err != nil {
		return err
	}
	out, _, _ := c.Kubectl(ctx, "-n", localcluster.FlowauthNamespace, "get", "pods", "-o", "wide")
	if mode == "policy" {
		// No pod at all: the API server runs the policies.
		out, _, _ = c.Kubectl(ctx, "get", "mutatingadmissionpolicies,validatingadmissionpolicies,deployments", "-A", "-l", "app.kubernetes.io/name=flowauth")
	}
	fmt.Printf("ready in %s\n%s", time.Since(start).Round(time.Millisecond), out)

	// The examples' GCP Secret is a placeholder google-auth would refuse: make a real key file.
	key, err := localcluster.ServiceAccountKey("flowauth-demo", "demo@flowauth-demo.iam.gserviceaccount.com")
	if err != nil {
		return err
	}
	keyFile := filepath.Join(work, "credentials.json")
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"apply", "-f", "examples/namespace.yaml"},
		{"-n", "flows", "apply", "-f", "examples/secrets.yaml"},
		{"-n", "flows", "delete", "secret", "gcp-credentials"},
		{"-n", "flows", "create", "secret", "generic", "gcp-credentials", "--from-file=credentials.json=" + keyFile},
	} {
		step("kubectl %s", strings.Join(args, " "))
		out, errOut, err := c.Kubectl(ctx, args...)
		fmt.Print(out, errOut)
		if err != nil {
			return err
		}
	}
	if mode == "policy" {
		step("waiting until the API server has loaded the policies (a dry-run flow-run pod in flows is injected)")
		if err := c.WaitPoliciesInForce(ctx, "flows"); err != nil {
			return err
		}
	}
	if prefect == "3" {
		err = prefect3(ctx, c, root, work)
	} else {
		err = prefect1(ctx, c, root, work)
	}
	if err != nil {
		return err
	}
	fmt.Printf("\nfor comparison, the Secrets hold: ACCESS_KEY %s, SECRET_ACCESS_KEY %s, credentials.json %s; the GitHub token %s\n",
		digest("AKIAEXAMPLEEXAMPLE00"), digest("example-secret-access-key-not-real"), digest(string(key)), digest(exampleGitHubToken))
	return nil
}

// exampleGitHubToken is examples/secrets.yaml's placeholder token.
const exampleGitHubToken = "ghp_exampleNotARealToken000000000000000"

// prefect1 applies examples/prefect1-flow-run-job.yaml, its container running the probe, and
// prints the injected pod and what the probe's libraries found.
func prefect1(ctx context.Context, c *localcluster.Cluster, root, work string) error {
	job, err := localcluster.ProbeJob(root, "prefect1-flow-run-job.yaml", c.Images.Probe, "AWS_CREDENTIALS", "GCP_CREDENTIALS")
	if err != nil {
		return err
	}
	manifest, err := yaml.Marshal(job)
	if err != nil {
		return err
	}
	jobFile := filepath.Join(work, "flow-run-job.yaml")
	if err := os.WriteFile(jobFile, manifest, 0o600); err != nil {
		return err
	}
	step("kubectl -n flows apply -f examples/prefect1-flow-run-job.yaml, its container running the probe image %s: flowauth-probe AWS_CREDENTIALS GCP_CREDENTIALS", c.Images.Probe)
	start := time.Now()
	if out, errOut, err := c.Kubectl(ctx, "-n", "flows", "apply", "-f", jobFile); err != nil {
		return fmt.Errorf("%w: %s", err, errOut)
	} else {
		fmt.Print(out, errOut)
	}
	pod, err := c.WaitForJobComplete(ctx, "flows", job.Name, 3*time.Minute)
	if err != nil {
		return err
	}
	fmt.Printf("job %s Complete %s after kubectl apply\n", job.Name, time.Since(start).Round(time.Millisecond))
	printPod(pod)
	step("what the flow run's own libraries found (SHA-256 prefixes of values, never values)")
	logs, _, err := c.Kubectl(ctx, "-n", "flows", "logs", pod.Name)
	if err != nil {
		return err
	}
	fmt.Print(logs)
	return nil
}

// prefect3 runs docs/prefect3.md's steps: a Prefect server, the work pool, the deployment, a
// worker and a flow run, and prints the injected pod and the run's logs from Prefect's API.
func prefect3(ctx context.Context, c *localcluster.Cluster, root, work string) error {
	step("prefect server start --host %s  (Prefect 3 from bin/prefect, SQLite in a temporary folder)", localcluster.GatewayIP)
	p, err := localcluster.StartPrefect(ctx, root, filepath.Join(work, "prefect"), localcluster.GatewayIP)
	if err != nil {
		return err
	}
	defer p.Stop()
	fmt.Println("PREFECT_API_URL=" + p.URL)
	img, err := c.PrefectFlowRunImage(ctx)
	if err != nil {
		return err
	}
	step("prefect work-pool get-default-base-job-template --type kubernetes > base-job-template.json  (its image and namespace defaults set to %s and flows)\n"+
		"    prefect work-pool create flow-runs --type kubernetes --base-job-template base-job-template.json", img)
	if err := p.CreateWorkPool(ctx, "flow-runs", img, "flows"); err != nil {
		return err
	}
	step("cd examples/prefect3 && prefect --no-prompt deploy --all  (its job variables: annotations flowauth.io/secrets: AWS_CREDENTIALS, GCP_CREDENTIALS, GITHUB_ACCESS_TOKEN)")
	project, err := p.Deploy(ctx, root)
	if err != nil {
		return err
	}
	step("prefect worker start --pool flow-runs --type kubernetes")
	if err := p.StartWorker(ctx, "demo-worker", "flow-runs", c.Kubeconfig); err != nil {
		return err
	}
	step("prefect deployment run flowauth-credentials/credentials")
	start := time.Now()
	id, err := p.CreateFlowRun(ctx, project, "flowauth-credentials/credentials", nil, nil)
	if err != nil {
		return err
	}
	run, err := p.WaitFlowRun(ctx, id, 4*time.Minute)
	if err != nil {
		return fmt.Errorf("%w\nthe worker:\n%s", err, localcluster.LastLines(p.Log("demo-worker"), 30))
	}
	fmt.Printf("flow run %s %s %s after prefect deployment run\n", run.Name, run.State.Name, time.Since(start).Round(time.Millisecond))
	if run.State.Type != "COMPLETED" {
		return fmt.Errorf("the flow run ended %s: %s", run.State.Name, run.State.Message)
	}
	pods, _, err := c.Kubectl(ctx, "-n", "flows", "get", "pods", "-l", "prefect.io/flow-run-id="+id, "-o", "name")
	if err != nil {
		return err
	}
	pod := &corev1.Pod{}
	if err := c.Client.Get(ctx, types.NamespacedName{Namespace: "flows", Name: strings.TrimPrefix(strings.TrimSpace(pods), "pod/")}, pod); err != nil {
		return err
	}
	printPod(pod)
	step("the flow run's logs in Prefect (SHA-256 prefixes of values, never values)")
	var logs []string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		if logs, err = p.Logs(ctx, id); err != nil {
			return err
		}
		if strings.Contains(strings.Join(logs, "\n"), "Finished in state") {
			break
		}
	}
	fmt.Println(strings.Join(logs, "\n"))
	return nil
}

func digest(value string) string {
	sum := sha256.Sum256([]byte(value))
	return "sha256:" + hex.EncodeToString(sum[:])[:16]
}

// printPod shows what flowauth did: names, Secret references and paths; never a value.
func printPod(p *corev1.Pod) {
	fmt.Printf("\npod %s/%s\n  flowauth.io/secrets: %s\n  flowauth.io/status:  %s\n", p.Namespace, p.Name,
		p.Annotations["flowauth.io/secrets"], p.Annotations["flowauth.io/status"])
	for _, c := range p.Spec.Containers {
		fmt.Printf("  container %s\n    env:\n", c.Name)
		for _, e := range c.Env {
			switch {
			case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
				r := e.ValueFrom.SecretKeyRef
				opt := ""
				if r.Optional != nil && *r.Optional {
					opt = " (optional)"
				}
				fmt.Printf("      %-62s <- secret %s, key %s%s\n", e.Name, r.Name, r.Key, opt)
			default:
				fmt.Printf("      %-62s =  %s (set in the Job, or a file path)\n", e.Name, e.Value)
			}
		}
		for _, m := range c.VolumeMounts {
			fmt.Printf("    mount: %s <- volume %s (readOnly=%v)\n", m.MountPath, m.Name, m.ReadOnly)
		}
	}
	for _, v := range p.Spec.Volumes {
		if v.Secret != nil {
			fmt.Printf("  volume %s <- secret %s\n", v.Name, v.Secret.SecretName)
		}
	}
}
