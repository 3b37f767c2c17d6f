// Command demo is `make demo`. As root it runs a one-node cluster (the control plane, containerd,
// kubelet, kube-proxy, kube-scheduler, a registry on 127.0.0.1), installs flowauth with its Helm
// chart from the registry's image, applies the example Secrets and the Prefect 1 flow-run Job with
// kubectl (its container replaced by the probe image), waits for the flow run to complete on the
// node, and prints the injected pod and what boto3 and google-auth found in it. Without root it
// says so and shows what the API server stores: a local control plane with the webhook binary
// registered over TLS, and the injected pod. Values are never printed, only names, references
// and digests. Everything stops on exit or Ctrl-C.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
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
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		return onNode(ctx, root)
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
func onNode(ctx context.Context, root string) error {
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

	step("helm install flowauth charts/flowauth -n %s --set image.repository=%s --wait", localcluster.FlowauthNamespace, strings.TrimSuffix(c.Images.Webhook, ":"+localcluster.ImageTag))
	start = time.Now()
	if err := c.InstallFlowauth(ctx); err != nil {
		return err
	}
	out, _, _ := c.Kubectl(ctx, "-n", localcluster.FlowauthNamespace, "get", "pods", "-o", "wide")
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
	step("kubectl -n flows apply -f examples/prefect1-flow-run-job.yaml, its container running the probe image %s: flowauth-probe AWS_CREDENTIALS GCP_CREDENTIALS", c.Images.Probe)
	start = time.Now()
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
	fmt.Printf("\nfor comparison, the Secrets hold: ACCESS_KEY %s, SECRET_ACCESS_KEY %s, credentials.json %s\n",
		digest("AKIAEXAMPLEEXAMPLE00"), digest("example-secret-access-key-not-real"), digest(string(key)))
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
