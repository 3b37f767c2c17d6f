package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite docs/configuration.md's table of the webhook's flags")

const (
	flagsBegin = "<!-- flags: generated from cmd/webhook's flags (make update-golden) -->\n"
	flagsEnd   = "<!-- end of flags -->\n"
)

// TestFlagsReferenceIsCurrent (issue 32): docs/configuration.md's table of the webhook's flags is
// the flag set itself: every flag, its environment variable, its default and its usage.
func TestFlagsReferenceIsCurrent(t *testing.T) {
	var c config
	fs := newFlagSet(&c)
	var b strings.Builder
	b.WriteString("| flag | environment | default | what it does |\n|---|---|---|---|\n")
	fs.VisitAll(func(f *flag.Flag) {
		def := "`" + f.DefValue + "`"
		if f.DefValue == "" {
			def = ""
		}
		fmt.Fprintf(&b, "| `--%s` | `%s` | %s | %s |\n", f.Name, envVar(f.Name), cell(def), cell(f.Usage))
	})
	want := b.String()
	path := filepath.Join("..", "..", "docs", "configuration.md")
	page, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	before, rest, ok1 := strings.Cut(string(page), flagsBegin)
	got, after, ok2 := strings.Cut(rest, flagsEnd)
	if !ok1 || !ok2 {
		t.Fatalf("%s has no section between %q and %q", path, flagsBegin, flagsEnd)
	}
	if got == want {
		return
	}
	if *update {
		if err := os.WriteFile(path, []byte(before+flagsBegin+want+flagsEnd+after), 0o600); err != nil { //nolint:gosec // a page of docs/
			t.Fatal(err)
		}
		return
	}
	t.Errorf("%s's table of flags is not the webhook's: run make update-golden", path)
}

// envVar is the environment variable ff reads a flag from.
func envVar(name string) string {
	return envPrefix + "_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// cell escapes what would end a table cell or read as HTML (<name>.<namespace>.svc).
func cell(s string) string {
	return strings.NewReplacer("|", "\\|", "<", "&lt;", ">", "&gt;").Replace(s)
}
