package main

import (
	"os"
	"regexp"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	"sigs.k8s.io/yaml"
)

// TestWorkPoolExampleServesThePullStep: the example work pool (examples/prefect-work-pool.json)
// declares the names as a job variable with a default; rendered as a worker would fill it, its
// Job's pods are injected by the webhook's own handler, and every {{ $VAR }} that the example
// prefect.yaml's pull step reads is among the env vars they get.
func TestWorkPoolExampleServesThePullStep(t *testing.T) {
	out, errOut, code := run(t, "", "render", "--work-pool", "../../examples/prefect-work-pool.json")
	if code != 0 {
		t.Fatalf("render: exit %d\n%s", code, errOut)
	}
	var job batchv1.Job
	if err := yaml.Unmarshal([]byte(strings.TrimPrefix(out, "---\n")), &job); err != nil {
		t.Fatalf("render's output is not a Job: %v\n%s", err, out)
	}
	pod := job.Spec.Template
	if got := pod.Annotations["flowauth.io/secrets"]; got != "GITHUB_ACCESS_TOKEN, AWS_CREDENTIALS" {
		t.Errorf("the job variable's default did not reach the annotation: %q", got)
	}
	injected := map[string]bool{}
	for _, e := range pod.Spec.Containers[0].Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			injected[e.Name] = true
		}
	}
	project, err := os.ReadFile("../../examples/prefect.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		Pull []map[string]map[string]any `json:"pull"`
	}
	if err := yaml.Unmarshal(project, &p); err != nil {
		t.Fatal(err)
	}
	envRef := regexp.MustCompile(`\{\{\s*\$([A-Z_][A-Z0-9_]*)\s*\}\}`)
	var refs []string
	for _, step := range p.Pull {
		for _, args := range step {
			for _, v := range args {
				if s, ok := v.(string); ok {
					for _, m := range envRef.FindAllStringSubmatch(s, -1) {
						refs = append(refs, m[1])
					}
				}
			}
		}
	}
	if len(refs) == 0 {
		t.Fatal("the example prefect.yaml's pull step reads no {{ $VAR }}")
	}
	for _, name := range refs {
		if !injected[name] {
			t.Errorf("prefect.yaml's pull step reads $%s, which the work pool's pods do not get (they get %v)", name, injected)
		}
	}
	if out, errOut, code := run(t, "", "check", "--work-pool", "../../examples/prefect-work-pool.json"); code != 0 || !strings.Contains(errOut, "1 flow-run pod templates: 0 denied, 0 warnings") {
		t.Errorf("check --work-pool: exit %d\n%s%s", code, out, errOut)
	}
}
