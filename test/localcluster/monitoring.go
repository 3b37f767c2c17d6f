package localcluster

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"text/template"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/flowauth/flowauth/internal/image"
)

// The monitoring stack's place in the cluster and the name of the Prometheus it runs.
const (
	MonitoringNamespace = "monitoring"
	PrometheusName      = "k8s"
)

//go:embed monitoring/stack.yaml
var monitoringStack string

// monitoringPrograms are the binaries hack/tools.sh monitoring builds into bin/monitoring, each
// served as an image of its own at /bin/<name>, as their upstream images have them (the operator
// starts the config reloader by that path).
var monitoringPrograms = []string{"operator", "prometheus-config-reloader", "prometheus", "kube-state-metrics"}

// MonitoringValues are the chart's values that hand flowauth to the monitoring stack: its
// ServiceMonitor and PrometheusRule.
var MonitoringValues = []string{"metrics.serviceMonitor.enabled=true", "metrics.prometheusRule.enabled=true"}

// MonitoringImages are the references of the monitoring stack's images in the node's registry.
type MonitoringImages struct {
	Operator, ConfigReloader, Prometheus, KubeStateMetrics string
}

// Prometheus is the running Prometheus of StartMonitoring, reached at its pod's address.
type Prometheus struct {
	URL string
	API promv1.API
}

// StartMonitoring installs monitoring as operators install it (kube-prometheus-stack's parts,
// built from Go modules by `hack/tools.sh monitoring`): the Prometheus Operator and its CRDs, a
// Prometheus it runs that selects every ServiceMonitor and PrometheusRule, kube-state-metrics,
// and the scraping of the API server's admission metrics; every scrape and rule evaluation every
// interval. It returns once Prometheus answers.
func (c *Cluster) StartMonitoring(ctx context.Context, interval time.Duration) (*Prometheus, error) {
	bin := filepath.Join(c.opts.RepoRoot, "bin", "monitoring")
	for _, p := range monitoringPrograms {
		if _, err := os.Stat(filepath.Join(bin, p)); err != nil {
			return nil, fmt.Errorf("%s not found in %s: run `hack/tools.sh monitoring` (make test-node and make cluster MONITORING=1 do)", p, bin)
		}
	}
	images, err := c.pushMonitoringImages(ctx, bin)
	if err != nil {
		return nil, err
	}
	// Server-side: the CRDs are larger than the annotation client-side apply keeps.
	if _, stderr, err := c.Kubectl(ctx, "apply", "--server-side", "-f", filepath.Join(bin, "crds")); err != nil {
		return nil, fmt.Errorf("applying the Prometheus Operator's CRDs: %w: %s", err, stderr)
	}
	if _, stderr, err := c.Kubectl(ctx, "wait", "--for=condition=Established", "--timeout=1m", "-f", filepath.Join(bin, "crds")); err != nil {
		return nil, fmt.Errorf("waiting for the CRDs: %w: %s", err, stderr)
	}
	if _, stderr, err := c.Kubectl(ctx, "apply", "-f", filepath.Join(bin, "rbac")); err != nil {
		return nil, fmt.Errorf("applying the upstream ClusterRoles: %w: %s", err, stderr)
	}
	version, err := os.ReadFile(filepath.Join(bin, "prometheus-version"))
	if err != nil {
		return nil, err
	}
	var stack bytes.Buffer
	err = template.Must(template.New("stack").Option("missingkey=error").Parse(monitoringStack)).Execute(&stack, map[string]any{
		"Namespace": MonitoringNamespace, "Prometheus": PrometheusName, "Images": images,
		"ScrapeInterval": model.Duration(interval).String(), "PrometheusVersion": strings.TrimSpace(string(version)),
	})
	if err != nil {
		return nil, err
	}
	manifest := filepath.Join(c.opts.WorkDir, "monitoring.yaml")
	if err := os.WriteFile(manifest, stack.Bytes(), 0o600); err != nil {
		return nil, err
	}
	if _, stderr, err := c.Kubectl(ctx, "apply", "-f", manifest); err != nil {
		return nil, fmt.Errorf("applying the monitoring stack: %w: %s", err, stderr)
	}
	pod := "prometheus-" + PrometheusName + "-0"
	var ip string
	err = waitFor(ctx, 4*time.Minute, "Prometheus "+MonitoringNamespace+"/"+pod+" ready", func() error {
		out, _, err := c.Kubectl(ctx, "-n", MonitoringNamespace, "get", "pod", pod, "-o",
			`jsonpath={.status.podIP} {.status.conditions[?(@.type=="Ready")].status}`)
		if err != nil {
			return err
		}
		addr, ready, _ := strings.Cut(out, " ")
		if ready != "True" {
			return fmt.Errorf("not ready: %q", out)
		}
		ip = addr
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w\n%s", err, c.monitoringState(ctx))
	}
	for _, d := range []string{"prometheus-operator", "kube-state-metrics"} {
		if _, stderr, err := c.Kubectl(ctx, "-n", MonitoringNamespace, "rollout", "status", "deployment/"+d, "--timeout=2m"); err != nil {
			return nil, fmt.Errorf("%s: %w: %s", d, err, stderr)
		}
	}
	p := &Prometheus{URL: "http://" + ip + ":9090"}
	client, err := promapi.NewClient(promapi.Config{Address: p.URL, Client: &http.Client{Timeout: 10 * time.Second}})
	if err != nil {
		return nil, err
	}
	p.API = promv1.NewAPI(client)
	return p, nil
}

// monitoringState is what tells why the stack did not come up: its pods, its events and the
// operator's last words.
func (c *Cluster) monitoringState(ctx context.Context) string {
	pods, _, _ := c.Kubectl(ctx, "-n", MonitoringNamespace, "get", "pods,statefulsets", "-o", "wide")
	events, _, _ := c.Kubectl(ctx, "-n", MonitoringNamespace, "get", "events", "--sort-by=.lastTimestamp")
	logs, _, _ := c.Kubectl(ctx, "-n", MonitoringNamespace, "logs", "deployment/prometheus-operator", "--tail=15")
	return "monitoring pods:\n" + pods + "\nevents:\n" + LastLines(events, 15) + "\noperator log:\n" + logs
}

// LastLines is the last n lines of s (a log, a command's output), for messages that show its end.
func LastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// pushMonitoringImages serves each program of bin/monitoring as an image for this machine's
// architecture (the node runs no other), run as nobody like the upstream images.
func (c *Cluster) pushMonitoringImages(ctx context.Context, bin string) (MonitoringImages, error) {
	ref := func(name string) string { return c.node.registry + "/monitoring/" + name + ":" + ImageTag }
	images := MonitoringImages{
		Operator: ref("operator"), ConfigReloader: ref("prometheus-config-reloader"),
		Prometheus: ref("prometheus"), KubeStateMetrics: ref("kube-state-metrics"),
	}
	here := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	for _, p := range monitoringPrograms {
		img, err := image.Of(here, v1.Config{Entrypoint: []string{"/bin/" + p}, User: "65534:65534"},
			image.FileLayer{Path: "bin/" + p, Src: filepath.Join(bin, p), Mode: 0o755})
		if err != nil {
			return images, err
		}
		if err := push(ctx, ref(p), img); err != nil {
			return images, fmt.Errorf("pushing %s: %w", p, err)
		}
	}
	return images, nil
}

// Query evaluates expr now and returns its samples.
func (p *Prometheus) Query(ctx context.Context, expr string) (model.Vector, error) {
	v, _, _, err := p.API.Query(ctx, expr, time.Now())
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", expr, err)
	}
	vec, ok := v.(model.Vector)
	if !ok {
		return nil, fmt.Errorf("query %s: a %s, not an instant vector", expr, v.Type())
	}
	return vec, nil
}

// Firing says whether alert is firing now (its ALERTS series), with the labels it fires with.
func (p *Prometheus) Firing(ctx context.Context, alert string) (bool, model.Metric, error) {
	v, err := p.Query(ctx, fmt.Sprintf(`ALERTS{alertname=%q, alertstate="firing"}`, alert))
	if err != nil || len(v) == 0 {
		return false, nil, err
	}
	return true, v[0].Metric, nil
}

// FirstAt is the first moment from since to now, to the second, at which expr returns data, read
// from the samples Prometheus stored (as its rules read them), so no poll's delay is in it; the
// zero time if it never did.
func (p *Prometheus) FirstAt(ctx context.Context, expr string, since time.Time) (time.Time, error) {
	v, _, _, err := p.API.QueryRange(ctx, expr, promv1.Range{Start: since, End: time.Now(), Step: time.Second})
	if err != nil {
		return time.Time{}, fmt.Errorf("query %s: %w", expr, err)
	}
	var first time.Time
	for _, series := range v.(model.Matrix) {
		if len(series.Values) > 0 {
			if at := series.Values[0].Timestamp.Time(); first.IsZero() || at.Before(first) {
				first = at
			}
		}
	}
	return first, nil
}
