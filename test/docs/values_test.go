package docs

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/flowauth/flowauth/internal/pagesection"
	"github.com/flowauth/flowauth/pkg/admission"
)

var update = flag.Bool("update", false, "rewrite docs/configuration.md's generated tables (values, bounds)")

const (
	valuesBegin = "<!-- values: generated from charts/flowauth (make update-golden) -->\n"
	valuesEnd   = "<!-- end of values -->\n"
	boundsBegin = "<!-- bounds: generated from pkg/admission.Bounds (make update-golden) -->\n"
	boundsEnd   = "<!-- end of bounds -->\n"
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
	pagesection.Check(t, filepath.Join(root, "docs", "configuration.md"), valuesBegin, valuesEnd, want, *update)
}

// TestBoundsReferenceIsCurrent (issue 32): docs/configuration.md's table of bounds is
// admission.Bounds, the constants the code uses; the other pages link to it and do not restate
// the numbers.
func TestBoundsReferenceIsCurrent(t *testing.T) {
	var b strings.Builder
	b.WriteString("| what | bound | past it |\n|---|---|---|\n")
	for _, bound := range admission.Bounds {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", pagesection.Cell(bound.What), pagesection.Cell(bound.Limit), pagesection.Cell(bound.Past))
	}
	pagesection.Check(t, filepath.Join("..", "..", "docs", "configuration.md"), boundsBegin, boundsEnd, b.String(), *update)
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
	eachWebhookSource(t, root, func(path, src string) {
		for _, m := range name.FindAllStringSubmatch(src, -1) {
			found++
			if !strings.Contains(string(page), "`"+m[1]) {
				t.Errorf("%s defines metric %s; docs/configuration.md does not list it", path, m[1])
			}
		}
	})
	if found < 10 {
		t.Errorf("found only %d metric names in the code: the pattern no longer matches how they are defined", found)
	}
}

// TestAnnotationsAreDocumented (issue 32): every annotation or label key the webhook and the
// policies read or write (a "flowauth.io/..." key, or a "....flowauth.io/" prefix, in the code of
// pkg/ and cmd/webhook) is in docs/reference.md's table of annotations.
func TestAnnotationsAreDocumented(t *testing.T) {
	root := filepath.Join("..", "..")
	page, err := os.ReadFile(filepath.Join(root, "docs", "reference.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, table, _ := strings.Cut(string(page), "\n## Annotations\n")
	table, _, _ = strings.Cut(table, "\n## ")
	// A key ends where its characters do: flowauth.io/v1alpha1 is an API version, not a key.
	key := regexp.MustCompile(`\b(flowauth\.io/[a-z][a-z-]*|[a-z][a-z-]*\.flowauth\.io/)([^a-z0-9-]|$)`)
	// Keys the code names that flowauth does not read or write itself.
	notFlowauths := map[string]string{"flowauth.io/credentials": "an example of a label a user may select Secrets by (--secret-label-selector's help)"}
	seen := map[string]string{}
	eachWebhookSource(t, root, func(path, src string) {
		for _, m := range key.FindAllStringSubmatch(src, -1) {
			if _, skip := notFlowauths[m[1]]; !skip {
				seen[m[1]] = path
			}
		}
	})
	for k, where := range seen {
		if !strings.Contains(table, "`"+k) {
			t.Errorf("%s reads or writes %s; docs/reference.md's table of annotations does not have it", where, k)
		}
	}
	if len(seen) < 8 {
		t.Errorf("found only %d annotation keys in the code: the pattern no longer matches how they are written", len(seen))
	}
}

// eachWebhookSource calls fn with each Go source file (tests left out) of the webhook's and the
// policies' code, pkg/ and cmd/webhook, by its path from the repository's root.
func eachWebhookSource(t *testing.T, root string, fn func(path, src string)) {
	t.Helper()
	for _, dir := range []string{"pkg", "cmd/webhook"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			b, err := os.ReadFile(path) //nolint:gosec // this repository's own files, walked by the test
			if err != nil {
				return err
			}
			fn(strings.TrimPrefix(path, root+"/"), string(b))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
