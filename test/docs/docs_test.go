package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/flowauth/flowauth/internal/results"
)

// TestEveryShellBlockIsRunOrSaysWhyNot (issue 32): each shell block of the pages in Pages carries a
// marker: run by a test as written, or not run, with the reason.
func TestEveryShellBlockIsRunOrSaysWhyNot(t *testing.T) {
	root := filepath.Join("..", "..")
	for _, page := range Pages {
		blocks, err := Blocks(filepath.Join(root, page))
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range blocks {
			if !b.Run && b.NotRun == "" {
				t.Errorf("%s:%d: a shell block with no marker: put <!-- docs-test: run --> before it (test/node's TestDocsRunAsWritten runs it) or <!-- docs-test: not run: WHY -->", page, b.Line)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(root, "test", "node", "docs_test.go")); err != nil {
		t.Errorf("no runner for the blocks marked run: %v", err)
	}
}

// TestLinksResolve (issue 32, finding 6): every relative link of README, CHANGELOG and docs/ names
// a file that exists and, with an anchor, a heading it has.
func TestLinksResolve(t *testing.T) {
	root := filepath.Join("..", "..")
	pages, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	pages = append(pages, filepath.Join(root, "README.md"), filepath.Join(root, "CHANGELOG.md"))
	for _, page := range pages {
		links, err := Links(page)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range links {
			target := page
			if l.File != "" {
				target = filepath.Join(filepath.Dir(page), l.File)
			}
			if _, err := os.Stat(target); err != nil {
				t.Errorf("%s:%d links to %s, which does not exist", l.From, l.Line, l.File)
				continue
			}
			if l.Anchor == "" || !strings.HasSuffix(target, ".md") {
				continue
			}
			anchors, err := Anchors(target)
			if err != nil {
				t.Fatal(err)
			}
			if !anchors[l.Anchor] {
				t.Errorf("%s:%d links to %s#%s, which has no such heading", l.From, l.Line, l.File, l.Anchor)
			}
		}
	}
}

// TestSectionReferencesResolve (issue 32, finding 6): a reference written as `docs/FILE.md,
// "Section"` (in values.yaml, the examples, messages, comments) names a heading the page has.
func TestSectionReferencesResolve(t *testing.T) {
	root := filepath.Join("..", "..")
	ref := regexp.MustCompile(`((?:docs/)?[a-z0-9-]+\.md),? (?:\\)?"([^"\\]+)(?:\\)?"`)
	checked := 0
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); name == "bin" || name == ".git" || name == "testdata" || name == "node_modules" {
				return filepath.SkipDir
			}
			return nil
		}
		switch filepath.Ext(path) {
		case ".go", ".yaml", ".yml", ".tpl", ".txt", ".md", ".json":
		default:
			return nil
		}
		b, err := os.ReadFile(path) //nolint:gosec // this repository's own files, walked by the test
		if err != nil {
			return err
		}
		for _, m := range ref.FindAllStringSubmatch(string(b), -1) {
			file := m[1]
			if !strings.HasPrefix(file, "docs/") && file != "README.md" && file != "CHANGELOG.md" {
				file = "docs/" + file
			}
			anchors, err := Anchors(filepath.Join(root, file))
			if err != nil {
				continue // not one of ours (DESIGN.md, say)
			}
			checked++
			// A reference wrapped over lines of a comment: the words only.
			section := strings.Join(strings.Fields(regexp.MustCompile(`\n\s*(#|//)?`).ReplaceAllString(m[2], " ")), " ")
			if !anchors[slug(section)] {
				t.Errorf("%s refers to %s, %q, which has no such heading", strings.TrimPrefix(path, root+"/"), m[1], section)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d section references checked", checked)
}

// TestPerformancePageIsWrittenByTheHarnesses (issue 32): docs/performance.md is the one page of
// measured figures, and every figure on it is a harness's: each harness has one section between its
// markers, in order, saying when, on which commit and machine and with which command it measured;
// the text around the sections carries no table.
func TestPerformancePageIsWrittenByTheHarnesses(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "docs", "performance.md"))
	if err != nil {
		t.Fatal(err)
	}
	page := string(raw)
	measured := regexp.MustCompile("(?m)^Measured \\d{4}-\\d{2}-\\d{2} \\d{2}:\\d{2} UTC, commit `[0-9a-f]{12}`[^,]*, on \\d+ cores \\(.+\\), .+; `make ([a-z]+)[^`]*`, .+\\.$")
	outside, at := "", 0
	for _, h := range results.Harnesses {
		begin, end := results.Begin(h), results.End(h)
		if n := strings.Count(page, begin); n != 1 {
			t.Errorf("make %s: %d sections, want 1", h, n)
			continue
		}
		i, j := strings.Index(page, begin), strings.Index(page, end)
		if i < at || j < i {
			t.Errorf("make %s: its section is out of order or not closed", h)
			continue
		}
		outside += page[at:i]
		section := page[i+len(begin) : j]
		m := measured.FindStringSubmatch(section)
		switch {
		case m == nil:
			t.Errorf("make %s: its section does not say when, on what and how it was measured (want a line matching %s)", h, measured)
		case m[1] != h:
			t.Errorf("make %s: its section was written by make %s", h, m[1])
		}
		if !strings.Contains(section, "\n|---") {
			t.Errorf("make %s: its section has no table", h)
		}
		at = j + len(end)
	}
	outside += page[at:]
	if strings.Contains(outside, "\n|") {
		t.Errorf("docs/performance.md has a table outside the harnesses' sections: a figure there is nobody's")
	}
}
