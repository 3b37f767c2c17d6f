package main

import (
	"os"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// TestDocsCoverTheHelp (issue 32, finding 4): docs/kubectl-flowauth.md and the plugin's help come
// from one set of commands: each subcommand is in the page's table and has its own section, and
// each of its own flags is named on the page.
func TestDocsCoverTheHelp(t *testing.T) {
	page, err := os.ReadFile("../../docs/kubectl-flowauth.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(page)
	root := newRootCommand(genericiooptions.NewTestIOStreamsDiscard())
	for _, c := range root.Commands() {
		if c.Hidden || c.Name() == "help" || c.Name() == "completion" {
			continue
		}
		if !strings.Contains(doc, "| `"+c.Name()) {
			t.Errorf("docs/kubectl-flowauth.md's table has no row for %s", c.Name())
		}
		if !strings.Contains(doc, "\n## "+c.Name()+"\n") {
			t.Errorf("docs/kubectl-flowauth.md has no section ## %s", c.Name())
		}
		flags(c).VisitAll(func(f *pflag.Flag) {
			if !strings.Contains(doc, "--"+f.Name) && (f.Shorthand == "" || !strings.Contains(doc, " -"+f.Shorthand+" ")) {
				t.Errorf("docs/kubectl-flowauth.md does not name %s's flag --%s (%s)", c.Name(), f.Name, f.Usage)
			}
		})
	}
}

// flags are a command's own flags, not kubectl's inherited ones.
func flags(c *cobra.Command) *pflag.FlagSet { return c.LocalNonPersistentFlags() }
