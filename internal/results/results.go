// Package results keeps docs/performance.md, the one page of measured figures, written by the
// harnesses themselves: each harness tees its report into a Report and, at the end, replaces its own
// section of the page (between markers naming it) with the report, dated, with the commit, the
// machine and the command that produced it. A hand-edited figure would be overwritten by the next run,
// and test/docs checks that every section is a harness's.
package results

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// Harnesses are the make targets that write a section, in the page's order.
var Harnesses = []string{"burst", "loadtest", "hostile", "scale"}

// Begin and End mark a harness's section; test/docs parses them.
func Begin(harness string) string {
	return "<!-- results: make " + harness + " (written by hack/" + harness + "; a hand edit is lost on the next run) -->"
}

// End closes the section Begin opens.
func End(harness string) string { return "<!-- end of results: make " + harness + " -->" }

// Report collects what a harness prints, and passes it on.
type Report struct {
	harness string
	started time.Time
	commit  string // read at the start: the tree the harness was built from
	body    bytes.Buffer
	out     io.Writer
}

// New starts a report for harness; what is written to Out also goes to stdout.
func New(harness string) *Report {
	r := &Report{harness: harness, started: time.Now(), commit: commit()}
	r.out = io.MultiWriter(os.Stdout, &r.body)
	return r
}

// Out is where the harness prints its report (markdown).
func (r *Report) Out() io.Writer { return r.out }

// Write puts the report into page's section for the harness, with the flags the run was given (so a
// partial run says so). An empty page path writes nothing.
func (r *Report) Write(page string) error {
	if page == "" {
		return nil
	}
	old, err := os.ReadFile(page)
	if err != nil {
		return err
	}
	info, err := os.Stat(page)
	if err != nil {
		return err
	}
	command := "make " + r.harness
	if args := givenFlags(flag.CommandLine); len(args) > 0 {
		command += ` ARGS="` + strings.Join(args, " ") + `"`
	}
	header := fmt.Sprintf("## `make %s`\n\nMeasured %s, commit %s, on %s; `%s`, %s.\n\n",
		r.harness, r.started.UTC().Format("2006-01-02 15:04 MST"), r.commit, Machine(), command,
		time.Since(r.started).Round(time.Second))
	updated, err := Replace(string(old), r.harness, header+strings.TrimSpace(r.body.String())+"\n")
	if err != nil {
		return fmt.Errorf("%s: %w", page, err)
	}
	// The page keeps the mode the checkout gave it.
	if err := os.WriteFile(page, []byte(updated), info.Mode().Perm()); err != nil { //nolint:gosec // the page the make target names, in this checkout
		return err
	}
	fmt.Fprintf(os.Stderr, "%s: the results are in %s, section \"make %s\"\n", r.harness, page, r.harness)
	return nil
}

// Replace returns page with harness's section holding section; a page without the section gets it
// at the end.
func Replace(page, harness, section string) (string, error) {
	begin, end := Begin(harness), End(harness)
	i, j := strings.Index(page, begin), strings.Index(page, end)
	block := begin + "\n\n" + section + "\n" + end
	switch {
	case i < 0 && j < 0:
		return strings.TrimRight(page, "\n") + "\n\n" + block + "\n", nil
	case i < 0 || j < i:
		return "", fmt.Errorf("the section of make %s is not between %q and %q", harness, begin, end)
	case strings.Count(page, begin) > 1:
		return "", fmt.Errorf("the section of make %s is there twice", harness)
	}
	return page[:i] + block + page[j+len(end):], nil
}

// givenFlags are the flags set on the command line, but for where the report goes and where the
// bench module is: what changes what was measured.
func givenFlags(fs *flag.FlagSet) []string {
	var given []string
	fs.Visit(func(f *flag.Flag) {
		if f.Name != "results" && f.Name != "bench" {
			given = append(given, "-"+f.Name+"="+f.Value.String())
		}
	})
	return given
}

// Machine says what the figures were measured on: they mean little elsewhere.
func Machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if name, ok := strings.CutPrefix(line, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(name), ":"))
				break
			}
		}
	}
	return fmt.Sprintf("%d cores (%s), %s/%s, %s", runtime.NumCPU(), model, runtime.GOOS, runtime.GOARCH, runtime.Version())
}

// commit names the tree measured, and says when it had uncommitted changes that can change a figure
// (pages do not: the harnesses run one after another before this page is committed).
func commit() string {
	out, err := exec.CommandContext(context.Background(), "git", "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := "`" + strings.TrimSpace(string(out)) + "`"
	if status, err := exec.CommandContext(context.Background(), "git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!*.md").Output(); err == nil && len(bytes.TrimSpace(status)) > 0 {
		c += " with uncommitted changes"
	}
	return c
}
