package main

import (
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/flowauth/flowauth/internal/pagesection"
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

var update = flag.Bool("update", false, "rewrite the help shown in docs/kubectl-flowauth.md")

// TestHelpOnThePageIsTheHelp (issue 32): docs/kubectl-flowauth.md shows, for the plugin and each
// subcommand, what --help prints (but kubectl's global flags), generated from the commands
// themselves: the page cannot drift from the help.
func TestHelpOnThePageIsTheHelp(t *testing.T) {
	path := "../../docs/kubectl-flowauth.md"
	page, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(page)
	root := newRootCommand(genericiooptions.NewTestIOStreamsDiscard())
	commands := []*cobra.Command{root}
	for _, c := range root.Commands() {
		if !c.Hidden && c.Name() != "help" && c.Name() != "completion" {
			commands = append(commands, c)
		}
	}
	for _, c := range commands {
		name := c.Name()
		if c == root {
			name = "kubectl flowauth"
		}
		begin := "<!-- help: " + name + " (generated from the command: make update-golden) -->\n"
		end := "<!-- end of help: " + name + " -->\n"
		var help strings.Builder
		c.SetOut(&help)
		if err := c.Help(); err != nil {
			t.Fatal(err)
		}
		text, _, _ := strings.Cut(help.String(), "\nGlobal Flags:")
		text, _, _ = strings.Cut(text, "\nFlags:\n      --as string") // the root's own flags are kubectl's
		want := "<details><summary><code>" + c.CommandPath() + " --help</code></summary>\n\n```text\n" + strings.TrimRight(text, "\n") + "\n```\n\n</details>\n"
		updated, changed, err := pagesection.Replace(doc, begin, end, want)
		switch {
		case err != nil:
			t.Errorf("%s: the help of %s: %v", path, name, err)
		case changed && !*update:
			t.Errorf("%s shows help of %s that is not the command's: run make update-golden", path, name)
		default:
			doc = updated
		}
	}
	if *update {
		if err := os.WriteFile(path, []byte(doc), 0o600); err != nil { //nolint:gosec // docs/kubectl-flowauth.md
			t.Fatal(err)
		}
	}
}

// flags are a command's own flags, not kubectl's inherited ones.
func flags(c *cobra.Command) *pflag.FlagSet { return c.LocalNonPersistentFlags() }
