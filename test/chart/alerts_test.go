package chart

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestAlertsFireAndStayQuiet: the chart's PrometheusRule passes `promtool check rules`, and
// `promtool test rules` runs testdata/alerts-test.yaml against it: every alert fires in one test
// and stays quiet in another. Every alert has a summary, a description and a runbook_url whose
// section exists in the README.
func TestAlertsFireAndStayQuiet(t *testing.T) {
	objs := decode(t, mustHelm(t, "template", "flowauth", "charts/flowauth", "--namespace", "flowauth-system",
		"--set", "metrics.prometheusRule.enabled=true"))
	rule := find(t, objs, "PrometheusRule")
	spec, err := yaml.Marshal(rule.Object["spec"])
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rules, spec, 0o600); err != nil {
		t.Fatal(err)
	}
	promtool := filepath.Join(root, "bin", "promtool")
	if out, err := exec.CommandContext(t.Context(), promtool, "check", "rules", rules).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}

	var groups struct {
		Groups []struct {
			Rules []struct {
				Alert       string            `json:"alert"`
				Annotations map[string]string `json:"annotations"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.Unmarshal(spec, &groups); err != nil {
		t.Fatal(err)
	}
	annotations := map[string]map[string]string{}
	runbooks, err := os.ReadFile(filepath.Join(root, "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range groups.Groups[0].Rules {
		annotations[r.Alert] = r.Annotations
		for _, key := range []string{"summary", "description", "runbook_url"} {
			if r.Annotations[key] == "" {
				t.Errorf("%s has no %s", r.Alert, key)
			}
		}
		anchor := strings.ToLower(r.Alert)
		if !strings.HasSuffix(r.Annotations["runbook_url"], "docs/operations.md#"+anchor) || !strings.Contains(string(runbooks), "\n## "+r.Alert+"\n") {
			t.Errorf("%s: runbook_url %q has no section in docs/operations.md (## %s)", r.Alert, r.Annotations["runbook_url"], r.Alert)
		}
	}

	// The tests as written, with each expected alert's annotations taken from its rule.
	src, err := os.ReadFile("testdata/alerts-test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var tests map[string]any
	if err := yaml.Unmarshal(src, &tests); err != nil {
		t.Fatal(err)
	}
	fired, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range tests["tests"].([]any) {
		for _, at := range tc.(map[string]any)["alert_rule_test"].([]any) {
			at := at.(map[string]any)
			name := at["alertname"].(string)
			if _, ok := annotations[name]; !ok {
				t.Errorf("the tests name an alert the chart lacks: %s", name)
			}
			exp, _ := at["exp_alerts"].([]any)
			if len(exp) == 0 {
				quiet[name] = true
			}
			for _, e := range exp {
				fired[name] = true
				e.(map[string]any)["exp_annotations"] = annotations[name]
			}
		}
	}
	for name := range annotations {
		if !fired[name] || !quiet[name] {
			t.Errorf("%s: a test where it fires: %v, where it stays quiet: %v", name, fired[name], quiet[name])
		}
	}
	filled, err := yaml.Marshal(tests)
	if err != nil {
		t.Fatal(err)
	}
	testFile := filepath.Join(dir, "alerts-test.yaml")
	if err := os.WriteFile(testFile, filled, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(t.Context(), promtool, "test", "rules", testFile).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
	if n := strings.Count(string(out), "SUCCESS"); n == 0 || slices.Contains(strings.Fields(string(out)), "FAILED") {
		t.Errorf("promtool test rules:\n%s", out)
	}
}
