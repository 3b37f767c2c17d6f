package pagesection

import "testing"

func TestReplace(t *testing.T) {
	page := "intro\n<!-- a -->\nold\n<!-- end a -->\nafter\n"
	got, changed, err := Replace(page, "<!-- a -->\n", "<!-- end a -->\n", "new\n")
	if err != nil || !changed || got != "intro\n<!-- a -->\nnew\n<!-- end a -->\nafter\n" {
		t.Errorf("Replace = %q, %v, %v", got, changed, err)
	}
	if _, changed, _ := Replace(got, "<!-- a -->\n", "<!-- end a -->\n", "new\n"); changed {
		t.Error("the same section again counts as a change")
	}
	if _, _, err := Replace(page, "<!-- b -->\n", "<!-- end b -->\n", "x\n"); err == nil {
		t.Error("a page without the section: no error")
	}
}

func TestCell(t *testing.T) {
	for in, want := range map[string]string{
		"a|b":                    `a\|b`,
		"Empty: <fullname>.":     "Empty: &lt;fullname&gt;.",
		"`pod/<pod>` and <name>": "`pod/<pod>` and &lt;name&gt;",
	} {
		if got := Cell(in); got != want {
			t.Errorf("Cell(%q) = %q, want %q", in, got, want)
		}
	}
}
