// Package docs reads the shell blocks of the user pages, for the tests that keep them true: every
// block a user types carries a marker, `<!-- docs-test: run -->` on the line before its fence when a
// test runs it as written (test/node's TestDocsRunAsWritten; `run, finding nothing is fine` for a
// runbook's diagnostics, whose greps find nothing on a healthy cluster), or `<!-- docs-test: not run: WHY -->`
// when it cannot run here (a cloud's console, a placeholder only a release fills in; WHY says which,
// and which test runs its filled-in copy, if one does).
package docs

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"strings"
)

// Pages are the user pages whose shell blocks are checked, from the repository's root.
var Pages = []string{"README.md", "docs/getting-started.md", "docs/install.md", "docs/production.md", "docs/configuration.md",
	"docs/troubleshooting.md", "docs/prefect3.md", "docs/reference.md", "docs/security.md", "docs/operations.md",
	"docs/kubectl-flowauth.md", "docs/large-clusters.md", "docs/performance.md"}

// Block is a fenced shell block of a page.
type Block struct {
	File string
	Line int // of the fence
	Text string
	// Run says the block runs as written in a test; NotRun is why it cannot (either or neither).
	Run    bool
	NotRun string
	// Diagnostic: a runbook's commands, run as written, whose greps may find nothing on a healthy
	// cluster (marker `run, finding nothing is fine`): only an error message fails them.
	Diagnostic bool
	// Background: a command that runs until stopped, as a worker does (marker `run in the
	// background`): it is started and left running while the page's later blocks run.
	Background bool
}

var (
	fence  = regexp.MustCompile("^```(sh|bash|shell)\\s*$")
	marker = regexp.MustCompile(`^<!-- docs-test: (run|run, finding nothing is fine|run in the background|not run: (.+)) -->$`)
)

// Blocks are the shell blocks of file, in order.
func Blocks(file string) ([]Block, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	var out []Block
	var prev string
	var cur *Block
	n := 0
	s := bufio.NewScanner(f)
	for s.Scan() {
		n++
		line := s.Text()
		switch {
		case cur != nil && strings.HasPrefix(line, "```"):
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.Text += line + "\n"
		case fence.MatchString(line):
			cur = &Block{File: file, Line: n}
			if m := marker.FindStringSubmatch(prev); m != nil {
				cur.Run, cur.NotRun = strings.HasPrefix(m[1], "run"), m[2]
				cur.Diagnostic = m[1] == "run, finding nothing is fine"
				cur.Background = m[1] == "run in the background"
			}
		}
		prev = line
	}
	if cur != nil {
		return nil, fmt.Errorf("%s:%d: a shell block that never ends", file, cur.Line)
	}
	return out, s.Err()
}

// Link is a relative link of a page: the file it names (from the repository's root) and the
// anchor, if any.
type Link struct {
	From   string
	Line   int
	File   string
	Anchor string
}

var linkRE = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// Links are the relative links of a Markdown file (not http, not mailto).
func Links(file string) ([]Link, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var out []Link
	inFence := false
	for i, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "```") {
			inFence = !inFence
		}
		if inFence {
			continue
		}
		for _, m := range linkRE.FindAllStringSubmatch(line, -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			path, anchor, _ := strings.Cut(target, "#")
			out = append(out, Link{From: file, Line: i + 1, File: path, Anchor: anchor})
		}
	}
	return out, nil
}

// Anchors are the anchors GitHub gives a Markdown file's headings.
func Anchors(file string) (map[string]bool, error) {
	b, err := os.ReadFile(file) //nolint:gosec // a page of this repository a link names
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	inFence := false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "```") {
			inFence = !inFence
		}
		if inFence || !strings.HasPrefix(line, "#") {
			continue
		}
		title := strings.TrimSpace(strings.TrimLeft(line, "#"))
		out[slug(title)] = true
	}
	return out, nil
}

// slug is GitHub's anchor for a heading: lower case, spaces to dashes, punctuation dropped.
func slug(title string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(title) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r > 127:
			b.WriteRune(r)
		}
	}
	return b.String()
}
