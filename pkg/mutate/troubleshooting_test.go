package mutate

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestTroubleshootingListsEveryReason: docs/troubleshooting.md's table of reasons has one row per
// Reason, and its second column says what the code does with it: "refuses" where the code denies
// with it, "warns" where it warns, both where both, and what never is emitted.
func TestTroubleshootingListsEveryReason(t *testing.T) {
	page, err := os.ReadFile(filepath.Join("..", "..", "docs", "troubleshooting.md"))
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `([A-Za-z]+)` \\| ([^|]+) \\|")
	documented := map[Reason]string{}
	for _, m := range row.FindAllStringSubmatch(string(page), -1) {
		if _, twice := documented[Reason(m[1])]; twice {
			t.Errorf("docs/troubleshooting.md lists %s twice", m[1])
		}
		documented[Reason(m[1])] = m[2]
	}
	used := reasonUses(t)
	for _, r := range Reasons {
		col, ok := documented[r]
		if !ok {
			t.Errorf("docs/troubleshooting.md does not list Reason %s", r)
			continue
		}
		delete(documented, r)
		uses := used[r]
		want := map[string]bool{
			"refuses": slices.Contains(uses, "deny") || slices.Contains(uses, "report"),
			"warns":   slices.Contains(uses, "warn") || slices.Contains(uses, "report"),
			"never":   len(uses) == 0,
		}
		for word, should := range want {
			if strings.Contains(col, word) != should {
				t.Errorf("docs/troubleshooting.md says %s %q; %q should %sbe there (the code: %v)", r, strings.TrimSpace(col), word, map[bool]string{true: "", false: "not "}[should], uses)
			}
		}
	}
	for r := range documented {
		t.Errorf("docs/troubleshooting.md lists %s, which is not a Reason of pkg/mutate", r)
	}
}

// reasonUses is, for each Reason, how the package's code reports it: deny, warn, or report (deny
// or warn by the missing-Secret policy).
func reasonUses(t *testing.T) map[Reason][]string {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	containerList := regexp.MustCompile(`containerList\([^)]*?(Reason[A-Za-z]+)`)
	call := regexp.MustCompile(`\b(deny|warn|report)\((?:[a-zA-Z.]+, [a-z]+, )?(Reason[A-Za-z]+)`)
	out := map[Reason][]string{}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range call.FindAllStringSubmatch(string(b), -1) {
			out[Reason(strings.TrimPrefix(m[2], "Reason"))] = append(out[Reason(strings.TrimPrefix(m[2], "Reason"))], m[1])
		}
		// A reason passed on through a variable (containerList's reason argument) is denied.
		for _, m := range containerList.FindAllStringSubmatch(string(b), -1) {
			out[Reason(strings.TrimPrefix(m[1], "Reason"))] = append(out[Reason(strings.TrimPrefix(m[1], "Reason"))], "deny")
		}
	}
	// Constants are named Reason<Value> but for one whose value differs: map by value.
	byConst := map[string]Reason{"InvalidNamespaceSecret": ReasonInvalidNamespaceSecret}
	for k, r := range byConst {
		if uses, ok := out[Reason(k)]; ok {
			out[r] = append(out[r], uses...)
			delete(out, Reason(k))
		}
	}
	return out
}
