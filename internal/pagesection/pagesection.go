// Package pagesection keeps a generated section of a page (the text between a begin and an end
// marker line) equal to what the code makes of its source: the values table from the chart, the
// bounds and the flags from their Go definitions, the plugin's help from its commands. Tests call
// Check; with their -update flag it writes the section instead.
package pagesection

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// Replace returns page with the text between begin and end (each a whole line, newline included)
// set to want, and whether that changed it.
func Replace(page, begin, end, want string) (string, bool, error) {
	before, rest, ok1 := strings.Cut(page, begin)
	got, after, ok2 := strings.Cut(rest, end)
	if !ok1 || !ok2 {
		return "", false, fmt.Errorf("no section between %q and %q", strings.TrimSpace(begin), strings.TrimSpace(end))
	}
	return before + begin + want + end + after, got != want, nil
}

// Check fails t when path's section between begin and end is not want; with update it writes want
// there instead.
func Check(t testing.TB, path, begin, end, want string, update bool) {
	t.Helper()
	page, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	updated, changed, err := Replace(string(page), begin, end, want)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if !changed {
		return
	}
	if !update {
		t.Errorf("%s: the section after %q is not what the code makes: run make update-golden", path, strings.TrimSpace(begin))
		return
	}
	if err := os.WriteFile(path, []byte(updated), 0o600); err != nil { //nolint:gosec // a page of this repository, named by its test
		t.Fatal(err)
	}
}

// Cell escapes s for a Markdown table cell: a "|" would end the cell, and "<name>" outside a code
// span would read as HTML and vanish (inside one it shows as written).
func Cell(s string) string {
	parts := strings.Split(strings.ReplaceAll(s, "|", "\\|"), "`")
	for i := 0; i < len(parts); i += 2 {
		parts[i] = strings.NewReplacer("<", "&lt;", ">", "&gt;").Replace(parts[i])
	}
	return strings.Join(parts, "`")
}
