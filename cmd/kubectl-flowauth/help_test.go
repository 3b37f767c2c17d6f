package main

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
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

// TestEveryPluginCommandOnThePagesParses (issue 32): each `kubectl flowauth ...` the README, the
// docs (contributor pages included) and the chart's notes show, in inline code or in a shell block,
// names a command of the plugin with flags it has and arguments it takes (the examples of the help
// shown on kubectl-flowauth.md included): a renamed flag or command fails here before a reader
// meets it.
func TestEveryPluginCommandOnThePagesParses(t *testing.T) {
	pages, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	more, _ := filepath.Glob("../../docs/contributing/*.md")
	pages = append(append(pages, more...), "../../README.md", "../../charts/flowauth/templates/NOTES.txt")
	inline := regexp.MustCompile("`(kubectl flowauth [^`]*)`")
	shellLine := regexp.MustCompile(`(?m)^\s*(?:\$ )?(kubectl flowauth .*)$`)
	checked := 0
	for _, page := range pages {
		b, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		var commands []string
		for _, m := range inline.FindAllStringSubmatch(text, -1) {
			commands = append(commands, m[1])
		}
		for _, block := range regexp.MustCompile("(?s)```[a-z]*\n(.*?)```").FindAllStringSubmatch(text, -1) {
			for _, m := range shellLine.FindAllStringSubmatch(block[1], -1) {
				// A usage synopsis ("[flags]", "[command]") is not a command to run.
				if !strings.Contains(m[1], "[flags]") && !strings.Contains(m[1], "[command]") {
					commands = append(commands, m[1])
				}
			}
		}
		for _, command := range commands {
			// The command itself: up to a comment, a pipe, a redirection or the next command.
			if i := strings.IndexAny(command, "#|>;&"); i >= 0 {
				command = command[:i]
			}
			args := strings.Fields(strings.TrimPrefix(command, "kubectl flowauth"))
			root := newRootCommand(genericiooptions.NewTestIOStreamsDiscard())
			c, rest, err := root.Find(args)
			if err == nil {
				c.InitDefaultHelpFlag()
				err = c.ParseFlags(rest)
			}
			if err == nil && c != root {
				err = c.ValidateArgs(c.Flags().Args())
			}
			if err != nil {
				t.Errorf("%s: %q does not parse with the plugin: %v", filepath.Base(page), strings.TrimSpace(command), err)
			}
			checked++
		}
	}
	t.Logf("%d commands of the plugin on %d pages parse", checked, len(pages))
	if checked < 50 {
		t.Errorf("only %d commands found: the pages' patterns changed?", checked)
	}
}
