// Package localcluster runs a real local control plane for the end-to-end tests and `make demo`:
// etcd and kube-apiserver (envtest), kube-controller-manager's Job controller, and the flowauth
// webhook binary itself, registered through config/webhook/manifests.yaml over TLS. With
// Options.Node (root) it runs a one-node cluster instead: a registry with flowauth's images,
// containerd, kubelet, kube-proxy and kube-scheduler (node.go, images.go, cleanup.go), where the
// chart is installed and pods run. The binaries come from bin/k8s and bin/node, built from Go
// modules by hack/tools.sh.
package localcluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Options says where things are and how to run the webhook.
type Options struct {
	// RepoRoot is the project's root (config/, cmd/, bin/ are below it).
	RepoRoot string
	// WorkDir receives the kubeconfig, the webhook binary and the logs.
	WorkDir string
	// WebhookArgs are extra flags for the webhook binary.
	WebhookArgs []string
	// NoWebhook starts the control plane and the Job controller only: nothing is registered and
	// the test runs webhooks itself with RunWebhook.
	NoWebhook bool
	// Log receives the webhook's and the controller manager's output; nil discards it.
	Log io.Writer
	// WebhookBin, when set, is a webhook binary to run instead of one built from RepoRoot (make
	// scale measures another build this way, e.g. an earlier commit's).
	WebhookBin string
	// Node runs a real node beside the control plane (needs root; see startWithNode): a local
	// registry with flowauth's images, containerd, kubelet, kube-proxy and kube-scheduler. Nothing
	// is registered: install the chart. The node's state and logs live in WorkDir/node.
	Node bool
	// Nodes is how many nodes run with Node (default 1, at most MaxNodes): each a kubelet with
	// its own containerd, state, bridge and pod range (198.18.N.0/24), named NodeName, then
	// NodeName-2, NodeName-3.
	Nodes int
	// WebhookPlatforms are the platforms the webhook image is built for with Node: none builds
	// this machine's only (the node runs no other, and a first make demo builds half as much);
	// the node suite asks for WebhookPlatforms, a release's, to check each.
	WebhookPlatforms []v1.Platform
}

// Cluster is a running local control plane with flowauth registered.
type Cluster struct {
	Config     *rest.Config
	Client     client.Client
	Kubeconfig string
	// WebhookLog holds everything the webhook binary printed (nil with NoWebhook); after
	// RestartWebhook, the new process's output.
	WebhookLog *SyncBuffer
	// AllWebhookLogs holds the output of every webhook process this cluster ran.
	AllWebhookLogs *SyncBuffer
	// MetricsURL is the webhook's Prometheus endpoint.
	MetricsURL string
	// Images are the images in the node's registry (with Options.Node).
	Images Images
	// WebhookReadyIn is how long the last (re)started webhook took from its start to ready.
	WebhookReadyIn time.Duration

	opts       Options
	assets     string
	webhookBin string
	// the registered webhook: its process, flags and TLS address, for RestartWebhook.
	webhook     *Webhook
	webhookArgs []string
	webhookAddr string
	env         *envtest.Environment
	procs       []*exec.Cmd
	// apiServerArgs is kube-apiserver's command line as envtest started it, for RestartAPIServer.
	apiServerArgs []string
	node          *node
	// prefectImage is the Prefect 3 flow-run image once PrefectFlowRunImage has pushed it.
	prefectImage string
}

// Start builds the webhook binary and starts everything; Stop undoes it, also after an error.
func Start(ctx context.Context, o Options) (*Cluster, error) {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets = filepath.Join(o.RepoRoot, "bin", "k8s")
	}
	for _, bin := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kubectl"} {
		if _, err := os.Stat(filepath.Join(assets, bin)); err != nil {
			return nil, fmt.Errorf("%s not found in %s: run `hack/tools.sh control-plane` (make test and make demo do)", bin, assets)
		}
	}
	if o.Node {
		return startWithNode(ctx, o, assets)
	}
	c := &Cluster{opts: o, assets: assets, webhookBin: o.WebhookBin, AllWebhookLogs: &SyncBuffer{}}
	if c.webhookBin == "" {
		c.webhookBin = filepath.Join(o.WorkDir, "webhook")
		build := exec.CommandContext(ctx, "go", "build", "-o", c.webhookBin, "./cmd/webhook")
		build.Dir = o.RepoRoot
		if out, err := build.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("building the webhook: %w\n%s", err, out)
		}
	}

	c.env = &envtest.Environment{BinaryAssetsDirectory: assets}
	if o.Log != nil {
		// The API server's own output too (a panic in its admission, say).
		api := c.env.ControlPlane.GetAPIServer()
		api.Out, api.Err = o.Log, o.Log
	}
	if !o.NoWebhook {
		c.env.WebhookInstallOptions.Paths = []string{filepath.Join(o.RepoRoot, "config", "webhook", "manifests.yaml")}
	}
	cfg, err := c.env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting etcd and kube-apiserver: %w", err)
	}
	c.Config = cfg
	if err := CheckServerVersion(cfg); err != nil {
		_ = c.Stop()
		return nil, err
	}
	if err := c.start(ctx, assets); err != nil {
		_ = c.Stop()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) start(ctx context.Context, assets string) error {
	if err := c.writeAdminKubeconfig(); err != nil {
		return err
	}

	// The Job controller (Job → Pod, as on a real cluster) and the namespace controller (so a
	// deleted Namespace goes away). No kubelet runs, so pods never start: what is stored is
	// exactly what the webhook changed.
	kcm := exec.CommandContext(ctx, filepath.Join(assets, "kube-controller-manager"),
		"--kubeconfig="+c.Kubeconfig, "--controllers=job,namespace", "--leader-elect=false",
		"--secure-port=0", "--use-service-account-credentials=false")
	kcm.Stdout, kcm.Stderr = c.logTo(), c.logTo()
	if err := c.run(kcm); err != nil {
		return fmt.Errorf("starting kube-controller-manager: %w", err)
	}
	if c.opts.NoWebhook {
		return nil
	}

	wh := c.env.WebhookInstallOptions
	c.webhookArgs = append([]string{
		"--port=" + strconv.Itoa(wh.LocalServingPort), "--cert-dir=" + wh.LocalServingCertDir, "--kubeconfig=" + c.Kubeconfig,
	}, c.opts.WebhookArgs...)
	c.webhookAddr = net.JoinHostPort(wh.LocalServingHost, strconv.Itoa(wh.LocalServingPort))
	return c.RestartWebhook(ctx)
}

// RestartWebhook stops the registered webhook binary (if it runs) and starts it again with its
// flags plus extra (a later flag wins), then waits until it is ready. WebhookLog and MetricsURL
// then belong to the new process.
func (c *Cluster) RestartWebhook(ctx context.Context, extra ...string) error {
	if c.webhook != nil {
		if err := c.webhook.Stop(); err != nil {
			return fmt.Errorf("stopping the webhook: %w", err)
		}
	}
	started := time.Now()
	w, err := c.RunWebhook(ctx, append(slices.Clone(c.webhookArgs), extra...)...)
	if err != nil {
		return err
	}
	c.webhook, c.WebhookLog, c.MetricsURL = w, w.Log, w.MetricsURL
	if err := w.WaitReady(ctx, c.webhookAddr); err != nil {
		return err
	}
	c.WebhookReadyIn = time.Since(started)
	return nil
}

// WebhookURL is where the registered webhook serves pods, and WebhookCA the CA its serving
// certificate chains to: for tests that talk to it as the API server does.
func (c *Cluster) WebhookURL() string { return "https://" + c.webhookAddr + "/mutate-v1-pod" }

// WebhookCA is the PEM of the CA of the registered webhook's serving certificate.
func (c *Cluster) WebhookCA() []byte { return c.env.WebhookInstallOptions.LocalServingCAData }

func (c *Cluster) logTo() io.Writer {
	if c.opts.Log == nil {
		return io.Discard
	}
	return c.opts.Log
}

// Webhook is one running webhook binary.
type Webhook struct {
	// Log holds everything it printed.
	Log *SyncBuffer
	// MetricsURL is its Prometheus endpoint; ReadyzURL its readiness probe.
	MetricsURL, ReadyzURL string
	cmd                   *exec.Cmd
}

// RunWebhook starts the webhook binary with args (plus free probe and metrics addresses). It
// does not wait: call WaitReady. Stop ends it, and so does the cluster's Stop.
func (c *Cluster) RunWebhook(ctx context.Context, args ...string) (*Webhook, error) {
	health, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	metrics, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	w := &Webhook{Log: &SyncBuffer{}, MetricsURL: "http://" + metrics + "/metrics", ReadyzURL: "http://" + health + "/readyz"}
	args = append([]string{"--health-probe-bind-address=" + health, "--metrics-bind-address=" + metrics}, args...)
	w.cmd = exec.CommandContext(ctx, c.webhookBin, args...)
	out := io.MultiWriter(w.Log, c.AllWebhookLogs, c.logTo())
	w.cmd.Stdout, w.cmd.Stderr = out, out
	if err := c.run(w.cmd); err != nil {
		return nil, fmt.Errorf("starting the webhook: %w", err)
	}
	return w, nil
}

// WaitReady waits for /readyz and for the TLS listener at tlsAddr.
func (w *Webhook) WaitReady(ctx context.Context, tlsAddr string) error {
	return waitReady(ctx, w.ReadyzURL, tlsAddr, w.Log)
}

// Stop ends the webhook as the kubelet would (SIGTERM, then kill) and returns its exit error.
func (w *Webhook) Stop() error { return stop(w.cmd) }

func (c *Cluster) run(cmd *exec.Cmd) error {
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return err
	}
	c.procs = append(c.procs, cmd)
	return nil
}

// Kubectl runs the real kubectl against the cluster and returns its stdout and stderr.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) (stdout, stderr string, err error) {
	cmd := c.KubectlCmd(ctx, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// KubectlCmd is kubectl with args against this cluster, not started: for commands that keep
// running, such as port-forward.
func (c *Cluster) KubectlCmd(ctx context.Context, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, filepath.Join(c.assets, "kubectl"), append([]string{"--kubeconfig=" + c.Kubeconfig}, args...)...)
}

// WaitForJobPod waits until the Job controller has created the Job's pod and returns it as stored.
func (c *Cluster) WaitForJobPod(ctx context.Context, namespace, job string) (*corev1.Pod, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		var pods corev1.PodList
		err := c.Client.List(ctx, &pods, client.InNamespace(namespace), client.MatchingLabels{batchv1.JobNameLabel: job})
		if err == nil && len(pods.Items) > 0 {
			return &pods.Items[0], nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("the Job controller created no pod for job %s/%s (last error: %w): %w", namespace, job, err, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Stop ends the webhooks and controller manager (SIGTERM, then kill) and the control plane;
// with a node, first its pods, and last whatever the node left on the machine.
func (c *Cluster) Stop() error {
	if c.node != nil {
		c.stopNode()
	}
	for i := len(c.procs) - 1; i >= 0; i-- {
		_ = stop(c.procs[i])
	}
	c.procs = nil
	if c.env != nil {
		_ = c.env.Stop()
	}
	if c.node == nil {
		return nil
	}
	for _, f := range c.node.logs {
		_ = f.Close()
	}
	return c.node.rec.cleanup()
}

// stop sends SIGTERM and waits, killing after 10 s; stopping twice is harmless.
func stop(p *exec.Cmd) error {
	if p.ProcessState != nil {
		return nil
	}
	_ = p.Process.Signal(os.Interrupt)
	done := make(chan error, 1)
	go func() { done <- p.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		_ = p.Process.Kill()
		return errors.Join(errors.New("did not stop within 10s of SIGTERM"), <-done)
	}
}

// FreeAddr returns a loopback address with a port that is free right now.
func FreeAddr() (string, error) {
	handedOut.mu.Lock()
	defer handedOut.mu.Unlock()
	for range 100 {
		var lc net.ListenConfig
		l, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		addr := l.Addr().String()
		_ = l.Close()
		// The kernel may hand a port out again once it is closed, before whoever was given it
		// listens (a test's --port, then the webhook's metrics port, both on one port: seen in
		// CI): a port is handed out once per process.
		if !handedOut.ports[addr] {
			handedOut.ports[addr] = true
			return addr, nil
		}
	}
	return "", errors.New("no free port that was not handed out already")
}

// handedOut are the addresses FreeAddr returned.
var handedOut = struct {
	mu    sync.Mutex
	ports map[string]bool
}{ports: map[string]bool{}}

// waitReady waits for the webhook's /readyz and its TLS listener.
func waitReady(ctx context.Context, readyz, tlsAddr string, log *SyncBuffer) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, readyz, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				dialer := &tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // reachability only
				conn, err := dialer.DialContext(ctx, "tcp", tlsAddr)
				if err == nil {
					_ = conn.Close()
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return errors.Join(fmt.Errorf("webhook not ready at %s", readyz), fmt.Errorf("its output:\n%s", log.String()))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// readyTimeout is how long a webhook may take to be ready: its key cache's first sync in a
// large cluster (make scale) takes part of it.
const readyTimeout = 3 * time.Minute

// SyncBuffer is a bytes.Buffer that a child process may write while a test reads it.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// StopWebhook stops the registered webhook binary, leaving its configuration registered: a test
// can then serve the same address, with the same certificate, from another program.
func (c *Cluster) StopWebhook() error {
	if c.webhook == nil {
		return nil
	}
	err := c.webhook.Stop()
	c.webhook = nil
	return err
}

// WebhookServing is the registered webhook's address and the folder of its serving certificate.
func (c *Cluster) WebhookServing() (addr, certDir string) {
	return c.webhookAddr, c.env.WebhookInstallOptions.LocalServingCertDir
}

// WaitServing waits until something answers TLS at the registered webhook's address.
func (c *Cluster) WaitServing(ctx context.Context) error {
	return waitFor(ctx, 30*time.Second, "a TLS server at "+c.webhookAddr, func() error {
		dialer := &tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // reachability only
		conn, err := dialer.DialContext(ctx, "tcp", c.webhookAddr)
		if err == nil {
			_ = conn.Close()
		}
		return err
	})
}
