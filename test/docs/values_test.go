package docs

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite docs/configuration.md's values table")

const (
	valuesBegin = "<!-- values: generated from charts/flowauth (make update-golden) -->\n"
	valuesEnd   = "<!-- end of values -->\n"
)

// TestValuesReferenceIsCurrent (issue 32): docs/configuration.md's table of the chart's values is
// what ValuesReference makes of values.yaml and values.schema.json: every value, its default, its
// type and its comment.
func TestValuesReferenceIsCurrent(t *testing.T) {
	root := filepath.Join("..", "..")
	want, err := ValuesReference(filepath.Join(root, "charts", "flowauth", "values.yaml"), filepath.Join(root, "charts", "flowauth", "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(root, "docs", "configuration.md")
	page, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	before, rest, ok1 := strings.Cut(string(page), valuesBegin)
	_, after, ok2 := strings.Cut(rest, valuesEnd)
	if !ok1 || !ok2 {
		t.Fatalf("%s has no generated values section", path)
	}
	got := strings.SplitN(rest, valuesEnd, 2)[0]
	if got == want {
		return
	}
	if *update {
		if err := os.WriteFile(path, []byte(before+valuesBegin+want+valuesEnd+after), 0o600); err != nil { //nolint:gosec // docs/configuration.md
			t.Fatal(err)
		}
		return
	}
	t.Errorf("docs/configuration.md's values table is not the chart's: run make update-golden")
}

// TestMetricsAreDocumented (issue 32): every metric name the code defines (a "flowauth_..." string
// of the webhook's packages) is in docs/configuration.md's table.
func TestMetricsAreDocumented(t *testing.T) {
	root := filepath.Join("..", "..")
	page, err := os.ReadFile(filepath.Join(root, "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	name := regexp.MustCompile(`"(flowauth_[a-z_]+_(total|info|bytes|objects|synced|successful|seconds))"`)
	found := 0
	for _, dir := range []string{"pkg", "cmd/webhook"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			b, err := os.ReadFile(path) //nolint:gosec // this repository's own files, walked by the test
			if err != nil {
				return err
			}
			for _, m := range name.FindAllStringSubmatch(string(b), -1) {
				found++
				if !strings.Contains(string(page), "`"+m[1]) {
					t.Errorf("%s defines metric %s; docs/configuration.md does not list it", strings.TrimPrefix(path, root+"/"), m[1])
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if found < 10 {
		t.Errorf("found only %d metric names in the code: the pattern no longer matches how they are defined", found)
	}
}
