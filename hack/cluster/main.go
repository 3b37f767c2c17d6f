// Command cluster is `make cluster` and `make cluster-down`: a local cluster (the control plane,
// one to four nodes of containerd and kubelet, kube-proxy, kube-scheduler, a registry on
// 127.0.0.1) with flowauth installed by its Helm chart from the registry's image, left running
// for a person to use as they would use kind. -nodes 3 (make cluster NODES=3) runs three nodes.
//
// -monitoring (make cluster MONITORING=1) adds monitoring as operators install it: the Prometheus
// Operator, a Prometheus and kube-state-metrics, with flowauth's ServiceMonitor and PrometheusRule.
//
//	cluster up      start it in the background (a harness process that owns every part), wait
//	                until flowauth is Ready, print how to use it
//	cluster down    stop it and remove everything it put on the machine
//	cluster serve   the harness itself (what `up` starts)
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/flowauth/flowauth/test/localcluster"
)

// ready is what the harness writes once flowauth serves; `up` prints it.
type ready struct {
	Kubeconfig string   `json:"kubeconfig"`
	Probe      string   `json:"probe"`
	Webhook    string   `json:"webhook"`
	Took       string   `json:"took"`
	Tools      string   `json:"tools"`
	Nodes      []string `json:"nodes"`
	Prometheus string   `json:"prometheus,omitempty"`
}

func main() {
	root := flag.String("repo", ".", "the project's root")
	dir := flag.String("dir", "", "serve: the cluster's folder")
	nodes := flag.Int("nodes", 1, fmt.Sprintf("how many nodes (1-%d): each a kubelet with its own containerd, state and pod range", localcluster.MaxNodes))
	monitoring := flag.Bool("monitoring", false, "also run the Prometheus Operator, Prometheus and kube-state-metrics, scraping flowauth with its alerts loaded")
	flag.Parse()
	if *nodes < 1 || *nodes > localcluster.MaxNodes {
		fmt.Fprintf(os.Stderr, "cluster: -nodes %d: want 1 to %d\n", *nodes, localcluster.MaxNodes)
		os.Exit(2)
	}
	repo, err := filepath.Abs(*root)
	if err == nil {
		switch flag.Arg(0) {
		case "up":
			err = up(repo, *nodes, *monitoring)
		case "down":
			err = localcluster.StopRunning(3 * time.Minute)
			if err == nil {
				fmt.Println("cluster: stopped; nothing of it is left on this machine")
			}
		case "serve":
			err = serve(repo, *dir, *nodes, *monitoring)
		default:
			err = errors.New("usage: cluster [-repo DIR] up|down")
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(1)
	}
}

func up(repo string, nodes int, monitoring bool) error {
	if os.Geteuid() != 0 {
		return localcluster.ErrNotRoot
	}
	if dir, running := localcluster.Running(); running {
		r, err := readReady(dir)
		if err != nil {
			return fmt.Errorf("a cluster is starting or running in %s (`make cluster-down` stops it): %w", dir, err)
		}
		fmt.Println("cluster: already running")
		printUsage(r)
		return nil
	}
	dir, err := os.MkdirTemp("", "flowauth-cluster-")
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	log, err := os.Create(filepath.Join(dir, "cluster.log"))
	if err != nil {
		return err
	}
	defer func() { _ = log.Close() }()
	harness := exec.CommandContext(context.Background(), self, "-repo", repo, "-dir", dir, "-nodes", strconv.Itoa(nodes), "-monitoring="+strconv.FormatBool(monitoring), "serve")
	harness.Stdout, harness.Stderr = log, log
	// Its own session: the harness outlives this command and the terminal that ran it.
	harness.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := harness.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- harness.Wait() }()
	fmt.Printf("cluster: starting in %s (log: %s/cluster.log); the first start builds the images\n", dir, dir)
	for {
		if r, err := readReady(dir); err == nil {
			printUsage(r)
			return nil
		}
		select {
		case err := <-exited:
			b, _ := os.ReadFile(filepath.Join(dir, "cluster.log"))
			return fmt.Errorf("the cluster did not start (%w):\n%s", err, localcluster.LastLines(string(b), 40))
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func serve(repo, dir string, nodes int, monitoring bool) (err error) {
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	start := time.Now()
	c, err := localcluster.Start(context.WithoutCancel(ctx), localcluster.Options{RepoRoot: repo, WorkDir: dir, Node: true, Nodes: nodes, Log: os.Stderr})
	if err != nil {
		return err
	}
	defer func() {
		fmt.Fprintln(os.Stderr, "cluster: stopping")
		if stopErr := c.Stop(); stopErr != nil {
			fmt.Fprintln(os.Stderr, "cluster: teardown:", stopErr)
			return // keep the folder and its log for a look
		}
		if err == nil { // a failed start keeps its log for `up` to show
			_ = os.RemoveAll(dir)
		}
	}()
	var set []string
	var prometheus string
	if monitoring {
		p, err := c.StartMonitoring(ctx, 15*time.Second)
		if err != nil {
			return err
		}
		prometheus = p.URL
		set = localcluster.MonitoringValues
	}
	if err := c.InstallFlowauth(ctx, set...); err != nil {
		return err
	}
	b, err := json.Marshal(ready{Kubeconfig: c.Kubeconfig, Probe: c.Images.Probe, Webhook: c.Images.Webhook, Tools: filepath.Join(repo, "bin", "k8s") + ":" + filepath.Join(repo, "bin"), Took: time.Since(start).Round(time.Second).String(), Nodes: c.Nodes(), Prometheus: prometheus})
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "ready.json"), b, 0o600); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "cluster: ready after %s\n", time.Since(start).Round(time.Second))
	<-ctx.Done()
	return nil
}

func readReady(dir string) (ready, error) {
	var r ready
	b, err := os.ReadFile(filepath.Join(dir, "ready.json"))
	if err == nil {
		err = json.Unmarshal(b, &r)
	}
	return r, err
}

func printUsage(r ready) {
	fmt.Printf("cluster: flowauth serves from inside the cluster (image %s); up in %s; nodes: %s\n", r.Webhook, r.Took, strings.Join(r.Nodes, ", "))
	fmt.Printf("export KUBECONFIG=%s\n", r.Kubeconfig)
	fmt.Printf("probe image: %s\n", r.Probe)
	if r.Prometheus != "" {
		fmt.Printf("Prometheus: %s (its HTTP API; ALERTS{alertname=~\"Flowauth.*\"} shows flowauth's alerts)\n", r.Prometheus)
	}
	fmt.Printf("export PATH=%s:$PATH  # kubectl %s and helm, built for this cluster (any kubectl works)\n", r.Tools, "v1.37.2")
	fmt.Print(`
Try a flow run (the probe prints what boto3 and google-auth found, as digests, never values):
  kubectl create namespace flows
  kubectl label namespace flows flowauth.io/injection=enabled
  kubectl -n flows create secret generic aws-credentials --from-literal=ACCESS_KEY=AKIAEXAMPLE --from-literal=SECRET_ACCESS_KEY=example
  kubectl -n flows apply -f - <<'JOB'
apiVersion: batch/v1
kind: Job
metadata: {name: probe}
spec:
  backoffLimit: 0
  template:
    metadata:
      annotations: {flowauth.io/secrets: AWS_CREDENTIALS}
    spec:
      restartPolicy: Never
      containers:
      - {name: flow, image: ` + r.Probe + `, command: [flowauth-probe, AWS_CREDENTIALS]}
JOB
  kubectl -n flows wait --for=condition=Complete job/probe && kubectl -n flows logs job/probe
`)
	fmt.Println("Any Job of yours works the same (examples/ has a Prefect 1 and a Prefect 2/3 one). `make cluster-down` removes it all.")
}
