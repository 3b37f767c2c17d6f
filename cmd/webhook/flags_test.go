package main

import (
	"flag"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flowauth/flowauth/internal/pagesection"
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
		fmt.Fprintf(&b, "| `--%s` | `%s` | %s | %s |\n", f.Name, envVar(f.Name), pagesection.Cell(def), pagesection.Cell(f.Usage))
	})
	pagesection.Check(t, filepath.Join("..", "..", "docs", "configuration.md"), flagsBegin, flagsEnd, b.String(), *update)
}

// envVar is the environment variable ff reads a flag from.
func envVar(name string) string {
	return envPrefix + "_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}
