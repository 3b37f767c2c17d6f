package docs

import (
	"os"
	"path/filepath"
	"testing"
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
