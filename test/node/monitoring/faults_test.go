package monitoring

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flowauth/flowauth/test/localcluster"
)

// fault is one alert's real cause on the node: cause makes it and returns what mends it;
// runbook follows the alert's section of docs/operations.md while the fault lasts and fails
// when a command there does not show what the section promises.
type fault struct {
	alert   string
	cause   func(t *testing.T) (mend func())
	runbook func(t *testing.T)
}

// latencyRatio is the suite's metrics.prometheusRule.latencyRatio (see faultLatency).
const latencyRatio = "0.1"

// TestEveryAlertFiresOnItsFaultAndResolves (issue 24, items 2 and 4): for each of the chart's
// eight alerts, the fault its runbook describes is made on the node; the alert's ALERTS series
// fires within its `for` plus two scrape intervals of its condition first holding, the
// runbook's commands show what they promise, and the alert resolves once the fault is mended.
// Faults that do not touch each other run side by side.
func TestEveryAlertFiresOnItsFaultAndResolves(t *testing.T) {
	needNode(t)
	rules := loadedRules(t)
	groups := [][]fault{
		{faultSecretMap(), faultDenials(), faultCertificate()},
		{faultAdmissionErrors()},
		{faultLatency()},
		{faultCallsFailing()},
		{faultNoReadyReplica()},
		{faultKeyCacheOverBudget()},
	}
	covered := map[string]bool{}
	for _, g := range groups {
		var names []string
		for _, f := range g {
			names = append(names, f.alert)
			covered[f.alert] = true
		}
		t.Run(strings.Join(names, "+"), func(t *testing.T) {
			for _, f := range g {
				t.Run(f.alert, func(t *testing.T) {
					t.Parallel()
					r, ok := rules[f.alert]
					if !ok {
						t.Fatalf("Prometheus has not loaded %s from the chart's PrometheusRule", f.alert)
					}
					fireAndResolve(t, f, r)
				})
			}
		})
	}
	for name := range rules {
		if !covered[name] {
			t.Errorf("alert %s has no fault in this test", name)
		}
	}
}

// loadedRules are flowauth's alerting rules as Prometheus loaded them through the operator.
func loadedRules(t *testing.T) map[string]promv1.AlertingRule {
	t.Helper()
	rules := map[string]promv1.AlertingRule{}
	localcluster.Eventually(t, 2*time.Minute, "Prometheus loading flowauth's eight alerts", func() (bool, string) {
		res, err := prom.API.Rules(context.Background(), nil)
		if err != nil {
			return false, err.Error()
		}
		for _, g := range res.Groups {
			for _, r := range g.Rules {
				if a, ok := r.(promv1.AlertingRule); ok && strings.HasPrefix(a.Name, "Flowauth") {
					rules[a.Name] = a
				}
			}
		}
		return len(rules) == 8, fmt.Sprintf("%d loaded", len(rules))
	})
	return rules
}

// fireAndResolve makes the fault, waits for the alert to fire, follows the runbook, mends the
// fault and waits for the alert to resolve.
func fireAndResolve(t *testing.T, f fault, r promv1.AlertingRule) {
	ctx := context.Background()
	start := time.Now()
	mend := f.cause(t)
	mended := false
	t.Cleanup(func() { // a failed wait must not leave its fault for the next ones
		if !mended {
			mend()
		}
	})
	// The poll also notes when it first saw the rule's expression hold and the alert fire (to its
	// 200 ms), for when the stored samples below are not found.
	var heldSeen, firingSeen time.Time
	localcluster.Eventually(t, 5*time.Minute, f.alert+" firing", func() (bool, string) {
		if heldSeen.IsZero() {
			if v, err := prom.Query(ctx, r.Query); err == nil && len(v) > 0 {
				heldSeen = time.Now()
			}
		}
		firing, _, err := prom.Firing(ctx, f.alert)
		if err != nil {
			return false, err.Error()
		}
		if firing {
			firingSeen = time.Now()
		}
		return firing, "not firing"
	})
	// Both moments from the samples Prometheus stored: when the rule's expression first held on
	// them, and the alert's first firing sample. A range query over them has come back empty
	// while the alert fired (seen in 2026-12 runs, for the expression or for ALERTS, in some
	// subtests and not others): then the poll's moment stands in, said so in the log. It is later
	// than the stored one by at most the poll's period plus a query, so the bound stays a bound on
	// the expression-to-firing delay (the firing side's poll moment can only lengthen it).
	holds, err := prom.FirstAt(ctx, r.Query, start)
	if err != nil {
		t.Fatal(err)
	}
	fired, err := prom.FirstAt(ctx, fmt.Sprintf(`ALERTS{alertname=%q, alertstate="firing"}`, f.alert), start)
	if err != nil {
		t.Fatal(err)
	}
	source := "stored samples"
	if holds.IsZero() || fired.IsZero() {
		source = "the poll's view (the stored samples' range query came back empty)"
		if holds.IsZero() {
			holds = heldSeen
		}
		if fired.IsZero() || fired.Before(holds) {
			fired = firingSeen
		}
	}
	forDuration := time.Duration(r.Duration * float64(time.Second))
	limit := forDuration + 2*interval
	t.Logf("%s: fired %s after the fault was made, %s after its condition first held (for %s, limit %s; from %s)",
		f.alert, fired.Sub(start).Round(time.Second), fired.Sub(holds), forDuration, limit, source)
	if holds.IsZero() || fired.Before(holds) || fired.Sub(holds) > limit {
		t.Errorf("%s fired at %s, its condition first held at %s: want within its for plus two scrape intervals (%s)", f.alert, fired, holds, limit)
	}

	f.runbook(t)

	mendedAt := time.Now()
	mended = true
	mend()
	localcluster.Eventually(t, 5*time.Minute, f.alert+" resolving", func() (bool, string) {
		firing, labels, err := prom.Firing(ctx, f.alert)
		if err != nil {
			return false, err.Error()
		}
		return !firing, fmt.Sprint(labels)
	})
	t.Logf("%s: resolved %s after the mend", f.alert, time.Since(mendedAt).Round(time.Second))
}

// flowauthLogs is the runbooks' log command: every replica's log, each line with its pod.
func flowauthLogs(t *testing.T) string {
	t.Helper()
	return kubectl(t, "-n", localcluster.FlowauthNamespace, "logs", "-l", "app.kubernetes.io/name=flowauth", "--prefix", "--tail=-1")
}

// runPlugin runs kubectl-flowauth as `kubectl flowauth ARGS` would, with the cluster's kubeconfig.
func runPlugin(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.CommandContext(context.Background(), plugin, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+cluster.Kubeconfig)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func mustContain(t *testing.T, what, out string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Errorf("%s does not show %q:\n%s", what, w, out)
		}
	}
}

// faultSecretMap: the secret map is replaced with one flowauth refuses (`helm upgrade` with an
// entry name Prefect could never read), then put back.
func faultSecretMap() fault {
	return fault{
		alert: "FlowauthSecretMapReloadFailing",
		cause: func(t *testing.T) func() {
			upgrade(t, "json:secretMap="+jsonString(badMap))
			return func() { upgrade(t, "json:secretMap="+jsonString(goodMap)) }
		},
		runbook: func(t *testing.T) {
			var rejected string
			for _, line := range strings.Split(flowauthLogs(t), "\n") {
				if strings.Contains(line, "secret map rejected") {
					rejected = line
				}
			}
			mustContain(t, "the log's `secret map rejected` line", rejected, `SNOWFLAKE__CREDS`)
			file := filepath.Join(t.TempDir(), "secret-map.yaml")
			if err := os.WriteFile(file, []byte(badMap), 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := runPlugin(t, "explain", "--secret-map", file)
			if err == nil {
				t.Errorf("kubectl flowauth explain --secret-map accepted the refused map:\n%s", out)
			}
			mustContain(t, "kubectl flowauth explain --secret-map", out, "SNOWFLAKE__CREDS")
		},
	}
}

// faultDenials: a Prefect worker keeps creating flow-run Jobs whose annotation names a secret
// that cannot be one (a Secret's name instead of a Prefect name); each is refused.
func faultDenials() fault {
	var ns string
	return fault{
		alert: "FlowauthDenialsRising",
		cause: func(t *testing.T) func() {
			ns = cluster.FlowsNamespace(t, "denied")
			for i := range 6 {
				job := flowRunJob(ns, fmt.Sprintf("flow-run-%d", i), "github-access-token")
				if err := cluster.Client.Create(context.Background(), job); err == nil || !strings.Contains(err.Error(), "flowauth.io/secrets") {
					t.Fatalf("Job %s: %v, want refused naming the annotation", job.Name, err)
				}
			}
			return func() {} // the denials stop; the alert resolves when they leave the window
		},
		runbook: func(t *testing.T) {
			events := kubectl(t, "get", "events", "-n", ns, "--field-selector", "type=Warning")
			mustContain(t, "kubectl get events --field-selector type=Warning", events, "FlowauthDeniedInvalidSecretName", "job/flow-run-5", "github-access-token")
			mustContain(t, "the log", flowauthLogs(t), `denied Job with a flow-run pod template`, `"namespace":"`+ns+`"`, `"name":"flow-run-5"`)
		},
	}
}

// faultCertificate: the serving certificate you provide (certs.secretName) is one near the end of
// its life: issued 20 days ago, expiring tomorrow. Mended by putting a new one in the Secret.
func faultCertificate() fault {
	var ns string
	return fault{
		alert: "FlowauthCertificateExpiringSoon",
		cause: func(t *testing.T) func() {
			ns = cluster.FlowsNamespace(t, "certificate")
			now := time.Now()
			if err := putServingCert(context.Background(), now.Add(-20*24*time.Hour), now.Add(24*time.Hour)); err != nil {
				t.Fatal(err)
			}
			return func() {
				if err := putServingCert(context.Background(), time.Now().Add(-time.Hour), time.Now().Add(90*24*time.Hour)); err != nil {
					t.Error(err)
				}
			}
		},
		runbook: func(t *testing.T) {
			out, _ := runPlugin(t, "doctor", "-n", ns)
			mustContain(t, "kubectl flowauth doctor", out, "serves expires in", "past its renewal", "Secret "+localcluster.FlowauthNamespace+"/"+servingSecret)
		},
	}
}

// faultAdmissionErrors: flowauth's RBAC loses `get` on namespaces (an edited ClusterRole), so
// the live read a Prefect flow-run pod without declarations needs fails; the pods are refused.
// Mended by `helm upgrade`, which puts the chart's ClusterRole back.
func faultAdmissionErrors() fault {
	var ns string
	return fault{
		alert: "FlowauthAdmissionErrors",
		cause: func(t *testing.T) func() {
			ns = cluster.FlowsNamespace(t, "errors")
			kubectl(t, "patch", "clusterrole", "flowauth", "--type=json", "-p", `[{"op":"replace","path":"/rules/0/verbs","value":["list","watch"]}]`)
			// Each refused while the fault lasts.
			stream := localcluster.StartStream(time.Second, func(ctx context.Context) error {
				pod := &corev1.Pod{
					ObjectMeta: metav1.ObjectMeta{GenerateName: "flow-", Namespace: ns, Labels: map[string]string{"prefect.io/flow-run-id": "1"}},
					Spec: corev1.PodSpec{NodeSelector: map[string]string{"flowauth.io/no-such-node": "true"},
						Containers: []corev1.Container{{Name: "flow", Image: cluster.Images.Pause}}},
				}
				return cluster.Client.Create(ctx, pod)
			})
			return func() {
				if failed, _, first := localcluster.Failures(stream.Stop()); failed == 0 || !strings.Contains(fmt.Sprint(first), "forbidden") {
					t.Errorf("%d flow-run pods refused during the fault, the first with %v: want them refused for the forbidden read", failed, first)
				}
				upgrade(t)
				mustContain(t, "the ClusterRole after helm upgrade", kubectl(t, "get", "clusterrole", "flowauth", "-o", "jsonpath={.rules[0].verbs}"), `"get"`)
			}
		},
		runbook: func(t *testing.T) {
			mustContain(t, "the log", flowauthLogs(t), "admission request failed", `"namespace":"`+ns+`"`, "forbidden")
		},
	}
}

// faultLatency: the replicas' CPU limit is squeezed to 10m (the kernel's floor: a CFS quota is at
// least 1 ms a 100 ms period) while 16 flow runs at a time are admitted (dry runs, so nothing is
// stored: admission is all they cost). On this 2-core machine the API server itself then passes
// about 30 a second, and the replicas' p99 rises from milliseconds to between 0.8 and 8 s from run
// to run, so the threshold here is latencyRatio 0.1 of the 5 s timeout (the default 0.8 is reached
// in some runs only).
func faultLatency() fault {
	var node string
	return fault{
		alert: "FlowauthAdmissionLatencyHigh",
		cause: func(t *testing.T) func() {
			ns := cluster.FlowsNamespace(t, "latency")
			upgrade(t, "resources.requests.cpu=10m", "resources.limits.cpu=10m")
			node = kubectl(t, "-n", localcluster.FlowauthNamespace, "get", "pods", "-l", "app.kubernetes.io/name=flowauth", "-o", "jsonpath={.items[0].spec.nodeName}")
			stop := load(ns, 16)
			return func() {
				stop()
				upgrade(t, "resources.requests.cpu=50m", "resources.limits.cpu=1000m") // the runbook: raise the limit
			}
		},
		runbook: func(t *testing.T) {
			if v, err := prom.Query(context.Background(), `histogram_quantile(0.99, sum by (le) (rate(controller_runtime_webhook_latency_seconds_bucket{webhook="/mutate-v1-pod"}[30s])))`); err == nil && len(v) > 0 {
				t.Logf("p99 of pod admissions under the squeeze: %.2f s", float64(v[0].Value))
			}
			limits := kubectl(t, "-n", localcluster.FlowauthNamespace, "get", "deployment", "flowauth", "-o", "jsonpath={.spec.template.spec.containers[0].resources.limits.cpu}")
			mustContain(t, "the Deployment's CPU limit", limits, "10m")
			// The runbook's grep: the replicas' throttled periods, per pod (and per container where
			// cAdvisor knows the runtime's containers; this node's does not name them).
			out := kubectl(t, "get", "--raw", "/api/v1/nodes/"+node+"/proxy/metrics/cadvisor")
			throttled := 0
			for _, line := range strings.Split(out, "\n") {
				f := strings.Fields(line)
				if strings.HasPrefix(line, "container_cpu_cfs_throttled_periods_total{") && strings.Contains(line, `namespace="`+localcluster.FlowauthNamespace+`"`) &&
					strings.Contains(line, `pod="flowauth-`) && len(f) >= 2 && f[len(f)-2] != "0" {
					throttled++
				}
			}
			if throttled == 0 {
				t.Errorf("the kubelet's cAdvisor metrics show no throttled periods of a replica:\n%s", out)
			}
		},
	}
}

// faultCallsFailing: the API server's packets to the webhook port are dropped (a firewall, a
// network policy, a security group), while the replicas stay ready (their probes use another
// port) and flow runs keep arriving.
func faultCallsFailing() fault {
	var ns string
	return fault{
		alert: "FlowauthWebhookCallsFailing",
		cause: func(t *testing.T) func() {
			ns = cluster.FlowsNamespace(t, "unreachable")
			var matches [][]string
			for _, ip := range strings.Fields(kubectl(t, "-n", localcluster.FlowauthNamespace, "get", "pods", "-l", "app.kubernetes.io/name=flowauth", "-o", "jsonpath={.items[*].status.podIP}")) {
				matches = append(matches, []string{"OUTPUT", "-d", ip + "/32", "-p", "tcp", "--dport", "9443"})
			}
			undo, err := localcluster.DropPackets(matches...)
			if err != nil {
				t.Fatal(err)
			}
			stream := cluster.StartFlowRunStream(ns, 500*time.Millisecond)
			return func() {
				if err := undo(); err != nil {
					t.Error(err)
				}
				stream.Stop()
			}
		},
		runbook: func(t *testing.T) {
			out, _ := runPlugin(t, "doctor", "-n", ns)
			mustContain(t, "kubectl flowauth doctor", out, "the API server cannot call flowauth", "dropped")
		},
	}
}

// faultNoReadyReplica: the replicas are gone and no node will take new ones (the node cordoned,
// as in a full or failing cluster). Mended by uncordoning.
func faultNoReadyReplica() fault {
	var node string
	return fault{
		alert: "FlowauthNoReadyReplica",
		cause: func(t *testing.T) func() {
			node = cluster.Nodes()[0]
			kubectl(t, "cordon", node)
			kubectl(t, "-n", localcluster.FlowauthNamespace, "delete", "pods", "-l", "app.kubernetes.io/name=flowauth", "--wait=false")
			return func() {
				kubectl(t, "uncordon", node)
				kubectl(t, "-n", localcluster.FlowauthNamespace, "rollout", "status", "deployment/flowauth", "--timeout=3m")
			}
		},
		runbook: func(t *testing.T) {
			out := kubectl(t, "-n", localcluster.FlowauthNamespace, "describe", "deployment", "flowauth")
			mustContain(t, "kubectl describe deployment/flowauth", out, "0 available")
			events := kubectl(t, "-n", localcluster.FlowauthNamespace, "get", "events", "--field-selector", "reason=FailedScheduling")
			mustContain(t, "the pods' events", events, "unschedulable")
		},
	}
}

// faultKeyCacheOverBudget: with key lookup on, a tenant fills its namespace with ConfigMaps of
// many distinct key names, past the cache's bound (here 64 KiB). Mended as the runbook says: the
// objects removed and the replicas restarted (what was kept as not known is known again only
// after a new list); the suite's install (no key lookup) is put back.
func faultKeyCacheOverBudget() fault {
	var ns string
	return fault{
		alert: "FlowauthKeyCacheOverBudget",
		cause: func(t *testing.T) func() {
			ns = cluster.FlowsNamespace(t, "keycache")
			upgrade(t, "secretLookup=keys", "secretLookupMaxKeyBytes=65536")
			for i := range 8 {
				cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("many-keys-%d", i), Namespace: ns}, Data: map[string]string{}}
				for k := range 600 { // about 15 KiB of key names each, distinct
					cm.Data[fmt.Sprintf("key-%04d-of-cm-%04d", k, i)] = ""
				}
				if err := cluster.Client.Create(context.Background(), cm); err != nil {
					t.Fatal(err)
				}
			}
			return func() {
				// The runbook's mend: the objects removed, the replicas restarted (what was kept
				// as not known is known again at the next list); then the suite's install back.
				kubectl(t, "-n", ns, "delete", "configmaps", "--all")
				kubectl(t, "-n", localcluster.FlowauthNamespace, "rollout", "restart", "deployment/flowauth")
				kubectl(t, "-n", localcluster.FlowauthNamespace, "rollout", "status", "deployment/flowauth", "--timeout=3m")
				upgrade(t, "secretLookup=none", "secretLookupMaxKeyBytes=2097152")
			}
		},
		runbook: func(t *testing.T) {
			// The runbook's command: every ConfigMap by its number of keys, no value printed.
			out := kubectl(t, "get", "configmaps", "-A", "-o", `go-template={{range .items}}{{if .data}}{{len .data}}{{else}}0{{end}} {{.metadata.namespace}}/{{.metadata.name}}{{"\n"}}{{end}}`)
			mustContain(t, "kubectl get configmaps -A by key count", out, "600 "+ns+"/many-keys-7")
			// And the Secrets' command of the same section: counts only, never a value.
			secrets := kubectl(t, "get", "secrets", "-A", "-o", `go-template={{range .items}}{{if .data}}{{len .data}}{{else}}0{{end}} {{.metadata.namespace}}/{{.metadata.name}}{{"\n"}}{{end}}`)
			mustContain(t, "kubectl get secrets -A by key count", secrets, localcluster.FlowauthNamespace+"/")
		},
	}
}

// upgrade is `helm upgrade --reuse-values` with set.
func upgrade(t *testing.T, set ...string) {
	t.Helper()
	if err := cluster.UpgradeFlowauth(context.Background(), set...); err != nil {
		t.Fatal(err)
	}
}

// flowRunJob is a Prefect flow-run Job declaring names; its pods never run (no node matches).
func flowRunJob(ns, name, names string) *batchv1.Job {
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{"flowauth.io/secrets": names}, Labels: map[string]string{"prefect.io/flow-run-id": name}},
			Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, NodeSelector: map[string]string{"flowauth.io/no-such-node": "true"},
				Containers: []corev1.Container{{Name: "flow", Image: cluster.Images.Pause}}},
		}},
	}
}

// load keeps workers flow-run pods being admitted back to back as dry runs (the webhook is
// called, nothing is stored) until stop.
func load(ns string, workers int) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				pod := &corev1.Pod{
					ObjectMeta: metav1.ObjectMeta{GenerateName: "flow-", Namespace: ns, Annotations: map[string]string{"flowauth.io/secrets": "GITHUB_ACCESS_TOKEN"}},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "flow", Image: cluster.Images.Pause}}},
				}
				_ = cluster.Client.Create(ctx, pod, client.DryRunAll) // slow, or timed out: what the alert is about
			}
		})
	}
	return func() { cancel(); wg.Wait() }
}
