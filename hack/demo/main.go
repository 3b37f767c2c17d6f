// Command demo is `make demo`: a local control plane (etcd, kube-apiserver, the Job controller),
// the flowauth webhook registered over TLS, the example Secrets and a Prefect 1 flow-run Job
// applied with kubectl, and the pod the Job controller created, printed as names and Secret
// references only. Everything stops on exit or Ctrl-C.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

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
		c.Stop()
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
