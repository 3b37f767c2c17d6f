package monitoring

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flowauth/flowauth/test/localcluster"
)

// dashboard is what the test reads of the Grafana dashboard: its variables and every panel's
// queries.
type dashboard struct {
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr         string `json:"expr"`
			LegendFormat string `json:"legendFormat"`
		} `json:"targets"`
	} `json:"panels"`
}

// rateInterval stands for Grafana's $__rate_interval: at least four scrape intervals.
const rateInterval = "1m"

// TestDashboardQueriesReturnData (issue 24, item 3): after flow runs (one injected through a
// Job, one warned about, one denied), every panel's query of the dashboard as installed (the
// chart's ConfigMap), with its variables filled in from Prometheus as Grafana fills them,
// returns data, and every label its legend shows is on every series. A renamed metric or label
// fails here, not on a dashboard in production.
func TestDashboardQueriesReturnData(t *testing.T) {
	needNode(t)
	ctx := context.Background()
	raw := kubectl(t, "-n", localcluster.FlowauthNamespace, "get", "configmap", "flowauth-dashboard", "-o", `jsonpath={.data.flowauth\.json}`)
	var d dashboard
	if err := json.Unmarshal([]byte(raw), &d); err != nil {
		t.Fatalf("the installed dashboard: %v", err)
	}
	flowRuns(t)

	// The variables, as Grafana's label_values queries fill them.
	vars := map[string]string{"$__rate_interval": rateInterval}
	for _, v := range d.Templating.List {
		q, ok := v.Query.(string)
		if !ok || !strings.HasPrefix(q, "label_values(") {
			continue
		}
		want := map[string]string{"namespace": localcluster.FlowauthNamespace, "service": "flowauth"}[v.Name]
		values := labelValues(t, ctx, fill(q, vars))
		if !slices.Contains(values, want) {
			t.Fatalf("variable $%s (%s) offers %v: want %s among them", v.Name, q, values, want)
		}
		vars["$"+v.Name] = want
	}

	legendLabel := regexp.MustCompile(`\{\{\s*(\w+)\s*\}\}`)
	queries := 0
	for _, p := range d.Panels {
		for _, target := range p.Targets {
			queries++
			expr := fill(target.Expr, vars)
			var labels []string
			for _, m := range legendLabel.FindAllStringSubmatch(target.LegendFormat, -1) {
				labels = append(labels, m[1])
			}
			localcluster.Eventually(t, 90*time.Second, fmt.Sprintf("panel %q: %s returns data with %v", p.Title, expr, labels), func() (bool, string) {
				v, err := prom.Query(ctx, expr)
				if err != nil {
					return false, err.Error()
				}
				if len(v) == 0 {
					return false, "no data"
				}
				for _, s := range v {
					for _, l := range labels {
						if s.Metric[model.LabelName(l)] == "" {
							return false, fmt.Sprintf("series %v has no %s label for the legend %q", s.Metric, l, target.LegendFormat)
						}
					}
				}
				return true, ""
			})
		}
	}
	if queries < 9 {
		t.Errorf("%d queries found in the dashboard: the test reads it wrong", queries)
	}
}

// fill puts the variables' values into a query, longest names first ($service before $s...).
func fill(q string, vars map[string]string) string {
	names := make([]string, 0, len(vars))
	for n := range vars {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int { return len(b) - len(a) })
	for _, n := range names {
		q = strings.ReplaceAll(q, n, vars[n])
	}
	return q
}

// labelValues answers Grafana's label_values(METRIC{...}, LABEL) from Prometheus.
func labelValues(t *testing.T, ctx context.Context, q string) []string {
	t.Helper()
	inner := strings.TrimSuffix(strings.TrimPrefix(q, "label_values("), ")")
	i := strings.LastIndex(inner, ",")
	selector, label := strings.TrimSpace(inner[:i]), strings.TrimSpace(inner[i+1:])
	var values []string
	localcluster.Eventually(t, 90*time.Second, "label values of "+q, func() (bool, string) {
		vs, _, _, err := prom.API.LabelValues(ctx, label, []string{selector}, time.Now().Add(-10*time.Minute), time.Now())
		if err != nil {
			return false, err.Error()
		}
		values = values[:0]
		for _, v := range vs {
			values = append(values, string(v))
		}
		return len(values) > 0, "none"
	})
	return values
}

// flowRuns makes the admissions a day of flow runs makes: a Job whose pod is injected (a
// template check and a pod admission), a pod warned about (a name outside the secret map) and
// one denied (a name that cannot be one).
func flowRuns(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	ns := cluster.FlowsNamespace(t, "dashboard")
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "flow-run", Namespace: ns},
		Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{"flowauth.io/secrets": "GITHUB_ACCESS_TOKEN"}},
			Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, NodeSelector: map[string]string{"flowauth.io/no-such-node": "true"},
				Containers: []corev1.Container{{Name: "flow", Image: cluster.Images.Pause}}},
		}},
	}
	if err := cluster.Client.Create(ctx, job); err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.WaitForJobPod(ctx, ns, job.Name); err != nil {
		t.Fatal(err)
	}
	for annotation, wantErr := range map[string]bool{"GITHUB_ACCESS_TOKEN, MY_OWN_TOKEN": false, "github-access-token": true} {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "flow-", Namespace: ns, Annotations: map[string]string{"flowauth.io/secrets": annotation}},
			Spec: corev1.PodSpec{NodeSelector: map[string]string{"flowauth.io/no-such-node": "true"},
				Containers: []corev1.Container{{Name: "flow", Image: cluster.Images.Pause}}},
		}
		if err := cluster.Client.Create(ctx, pod); (err != nil) != wantErr {
			t.Fatalf("flowauth.io/secrets %q: error %v, want an error: %v", annotation, err, wantErr)
		}
	}
}
