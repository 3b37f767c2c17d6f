package policy

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the chart's template of the policies")

// TestChartTemplateIsCurrent: the chart's policies are ChartTemplate's output, so a change of
// pkg/policy reaches the chart (make update-golden writes it). test/chart checks what it renders.
func TestChartTemplateIsCurrent(t *testing.T) {
	want, err := ChartTemplate()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("..", "..", ChartTemplatePath)
	if *update {
		if err := os.WriteFile(path, want, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is not pkg/policy's current output: run make update-golden", ChartTemplatePath)
	}
}
