// Package monitoring proves the chart's monitoring as operators run it (issue 24): the Prometheus
// Operator, a Prometheus and kube-state-metrics in a one-node cluster, built from Go modules;
// flowauth installed with its ServiceMonitor, PrometheusRule and dashboard; each alert fired by
// its real fault and resolved once the fault is mended, its runbook followed meanwhile; and every
// dashboard query answered from what Prometheus scraped.
//
// Everything is faster here than in production, and only by the chart's own values: scrapes and
// rule evaluations every 5 s, each alert's `for` 15 s, rates over 30 s, denials over a minute.
//
// It needs root, as the node suite does (under CI=true missing root fails it).
package monitoring

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/flowauth/flowauth/internal/image"
	"github.com/flowauth/flowauth/test/localcluster"
)

const (
	// interval is every scrape's and every rule evaluation's.
	interval = 5 * time.Second
	// alertFor replaces each alert's `for` that is not 0s by default.
	alertFor = 15 * time.Second
	// servingSecret holds the certificate flowauth serves, issued by the suite's CA, so the
	// certificate alert's fault can be made: one near the end of its life.
	servingSecret = "flowauth-serving"
)

var (
	cluster    *localcluster.Cluster
	prom       *localcluster.Prometheus
	ca         *localcluster.CA
	root       string
	skipReason string
	// plugin is kubectl-flowauth, built into pluginDir for the runbooks' commands.
	plugin, pluginDir string
)

// goodMap and badMap are secret maps (the chart's secretMap value): badMap's entry name is
// refused, so the webhook keeps goodMap in force and FlowauthSecretMapReloadFailing fires.
const (
	goodMap = "apiVersion: flowauth.io/v1alpha1\nkind: SecretMap\nsecrets:\n  SNOWFLAKE_CREDS:\n    shape: string\n    keys: [{name: value}]\n"
	badMap  = "apiVersion: flowauth.io/v1alpha1\nkind: SecretMap\nsecrets:\n  SNOWFLAKE__CREDS:\n    shape: string\n    keys: [{name: value}]\n"
)

func TestMain(m *testing.M) { os.Exit(runSuite(m)) }

func runSuite(m *testing.M) int {
	// The client's admission warnings (the dashboard's warned flow run) are expected here.
	logf.SetLogger(logr.Discard())
	root, _ = filepath.Abs("../../..")
	start := time.Now()
	c, skip, done, err := localcluster.StartForSuite("monitoring", localcluster.Options{RepoRoot: root, Log: os.Stderr})
	if err != nil {
		fmt.Fprintln(os.Stderr, "monitoring: FAIL:", err)
		return 1
	}
	cluster, skipReason = c, skip
	if skipReason != "" {
		return m.Run()
	}
	defer done()
	if pluginDir, err = os.MkdirTemp("", "flowauth-plugin-"); err != nil {
		fmt.Fprintln(os.Stderr, "monitoring:", err)
		return 1
	}
	defer func() { _ = os.RemoveAll(pluginDir) }()
	if err := setUp(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "monitoring:", err)
		dump()
		return 1
	}
	fmt.Fprintf(os.Stderr, "monitoring: cluster, monitoring and flowauth up in %s\n", time.Since(start).Round(time.Second))
	code := m.Run()
	if code != 0 {
		dump()
	}
	return code
}

func setUp(ctx context.Context) error {
	var err error
	if prom, err = cluster.StartMonitoring(ctx, interval); err != nil {
		return err
	}
	if ca, err = localcluster.NewCA("flowauth-monitoring-test"); err != nil {
		return err
	}
	if _, stderr, err := cluster.Kubectl(ctx, "create", "namespace", localcluster.FlowauthNamespace); err != nil {
		return fmt.Errorf("%w: %s", err, stderr)
	}
	if err := putServingCert(ctx, time.Now().Add(-time.Hour), time.Now().Add(90*24*time.Hour)); err != nil {
		return err
	}
	plugin = filepath.Join(pluginDir, "kubectl-flowauth")
	if err := image.GoBuild(ctx, root, plugin, "./cmd/kubectl-flowauth", runtime.GOARCH, "-s -w"); err != nil {
		return err
	}
	return cluster.InstallFlowauth(ctx, values()...)
}

// values install flowauth as the monitoring stack finds it, with the suite's faster timings.
func values() []string {
	v := append([]string{}, localcluster.MonitoringValues...)
	v = append(v, "metrics.dashboard.enabled=true",
		"metrics.serviceMonitor.interval="+interval.String(),
		"metrics.prometheusRule.rateWindow=30s",
		"metrics.prometheusRule.denials.window=1m",
		"json:metrics.prometheusRule.latencyRatio="+latencyRatio, // --set would make it a string
		"certs.secretName="+servingSecret,
		"certs.caBundle="+base64.StdEncoding.EncodeToString(ca.PEM),
		"json:secretMap="+jsonString(goodMap))
	for _, a := range []string{"admissionErrors", "webhookCallsFailing", "noReadyReplica", "admissionLatencyHigh", "certificateExpiringSoon", "keyCacheOverBudget"} {
		v = append(v, "metrics.prometheusRule.for."+a+"="+alertFor.String())
	}
	return v
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// putServingCert writes the serving certificate Secret: one of the suite's CA for the Service's
// name, valid from notBefore to notAfter.
func putServingCert(ctx context.Context, notBefore, notAfter time.Time) error {
	certPEM, keyPEM, err := ca.IssueServingFor(notBefore, notAfter, "flowauth."+localcluster.FlowauthNamespace+".svc")
	if err != nil {
		return err
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: servingSecret, Namespace: localcluster.FlowauthNamespace}}
	_, err = controllerutil.CreateOrUpdate(ctx, cluster.Client, secret, func() error {
		secret.Type = corev1.SecretTypeTLS
		secret.Data = map[string][]byte{corev1.TLSCertKey: certPEM, corev1.TLSPrivateKeyKey: keyPEM}
		return nil
	})
	return err
}

func needNode(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
}

func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	return cluster.MustKubectl(t, args...)
}

// dump prints what tells why: the pods, the recent events and Prometheus' targets.
func dump() {
	ctx := context.Background()
	out, _, _ := cluster.Kubectl(ctx, "get", "pods", "-A", "-o", "wide")
	fmt.Fprintf(os.Stderr, "pods:\n%s\n", out)
	out, _, _ = cluster.Kubectl(ctx, "get", "events", "-A", "--sort-by=.lastTimestamp")
	fmt.Fprintf(os.Stderr, "events:\n%s\n", localcluster.LastLines(out, 40))
	if prom != nil {
		if targets, err := prom.API.Targets(ctx); err == nil {
			for _, tg := range targets.Active {
				fmt.Fprintf(os.Stderr, "target %s %s %s\n", tg.ScrapeURL, tg.Health, tg.LastError)
			}
		}
	}
}
