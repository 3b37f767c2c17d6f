// Package integration runs flowauth's handler behind a real kube-apiserver and etcd (envtest),
// registered through config/webhook/manifests.yaml over TLS, and checks what the API server
// stores. One test per user story.
package integration

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zapcore"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	fwadmission "github.com/flowauth/flowauth/pkg/admission"
	"github.com/flowauth/flowauth/pkg/secretmap"
	"github.com/flowauth/flowauth/test/localcluster"
)

var (
	restCfg  *rest.Config
	k8s      client.Client
	nsCache  cache.Cache
	registry *prometheus.Registry
)

func TestMain(m *testing.M) { os.Exit(runSuite(m)) }

// controlPlaneAssets finds the binaries hack/tools.sh built. A missing control plane is an error,
// never a skip: `make test` builds it.
func controlPlaneAssets() (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, nil
	}
	dir, _ := filepath.Abs("../../bin/k8s")
	if _, err := os.Stat(filepath.Join(dir, "kube-apiserver")); err != nil {
		return "", fmt.Errorf("no local control plane: set KUBEBUILDER_ASSETS or run `make test`, which builds it into bin/k8s with hack/tools.sh")
	}
	return dir, nil
}

func runSuite(m *testing.M) int {
	logf.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapcore.Level(zapLevel()))))
	assets, err := controlPlaneAssets()
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		return 1
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		WebhookInstallOptions: envtest.WebhookInstallOptions{Paths: []string{
			"../../config/webhook/manifests.yaml",
			"testdata/container-adder.yaml",
		}},
	}
	restCfg, err = env.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration: starting the control plane:", err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	if err := localcluster.CheckServerVersion(restCfg); err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		return 1
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := startWebhook(ctx, env.WebhookInstallOptions); err != nil {
		fmt.Fprintln(os.Stderr, "integration: starting the webhook:", err)
		return 1
	}
	k8s, err = client.New(restCfg, client.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

func zapLevel() int8 {
	if v, err := strconv.Atoi(os.Getenv("TEST_LOG_V")); err == nil && v >= 0 && v <= 10 {
		return int8(-v)
	}
	return 0
}

// startWebhook runs flowauth's handler in a controller-runtime manager, as cmd/webhook does, on
// the host, port and certificates envtest registered with the API server.
func startWebhook(ctx context.Context, o envtest.WebhookInstallOptions) error {
	server := webhook.NewServer(webhook.Options{Host: o.LocalServingHost, Port: o.LocalServingPort, CertDir: o.LocalServingCertDir})
	mgr, err := ctrl.NewManager(restCfg, ctrl.Options{
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		WebhookServer:          server,
	})
	if err != nil {
		return err
	}
	namespaces, err := fwadmission.WatchNamespaces(ctx, mgr.GetCache())
	if err != nil {
		return err
	}
	nsCache = mgr.GetCache()
	registry = prometheus.NewRegistry()
	// Registering through the manager's getter is what adds the server to its runnables.
	server = mgr.GetWebhookServer()
	metrics := fwadmission.NewMetrics(registry)
	pods := &fwadmission.PodMutator{
		Secrets:    secretmap.StaticStore(secretmap.Builtin()),
		Namespaces: namespaces,
		Metrics:    metrics,
		// As cmd/webhook records them: validated and paced.
		Events: fwadmission.NewPacedEvents(mgr.GetEventRecorder("flowauth-webhook"), metrics),
	}
	server.Register(fwadmission.PodPath, fwadmission.NewPodWebhook(pods))
	server.Register(fwadmission.JobPath, fwadmission.NewTemplateWebhook(&fwadmission.TemplateValidator{Pods: pods}))
	server.Register(containerAdderPath, &webhook.Admission{Handler: containerAdder{}})
	go func() {
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "integration: manager:", err)
		}
	}()
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		return fmt.Errorf("namespace cache did not sync")
	}
	// Ready once the TLS listener answers.
	addr := net.JoinHostPort(o.LocalServingHost, strconv.Itoa(o.LocalServingPort))
	deadline := time.Now().Add(20 * time.Second)
	for {
		dialer := &tls.Dialer{NetDialer: &net.Dialer{Timeout: time.Second}, Config: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // readiness probe only
		conn, err := dialer.DialContext(ctx, "tcp", addr)
		if err == nil {
			_ = conn.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("webhook server at %s not reachable: %w", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
