package results

import (
	"strings"
	"testing"
)

func TestReplace(t *testing.T) {
	page := "# Results\n\nintro\n\n" + Begin("burst") + "\n\nold burst\n\n" + End("burst") + "\n\n" +
		Begin("scale") + "\n\nold scale\n\n" + End("scale") + "\n"
	tests := []struct {
		name, harness, section string
		want                   []string // in this order
		gone                   []string
	}{
		{"replaces only its own section", "burst", "new burst\n",
			[]string{"intro", Begin("burst"), "new burst", End("burst"), Begin("scale"), "old scale", End("scale")}, []string{"old burst"}},
		{"the last section", "scale", "new scale\n",
			[]string{Begin("burst"), "old burst", Begin("scale"), "new scale", End("scale")}, []string{"old scale"}},
		{"a harness without a section gets one at the end", "hostile", "hostile\n",
			[]string{End("scale"), Begin("hostile"), "hostile", End("hostile")}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Replace(page, tt.harness, tt.section)
			if err != nil {
				t.Fatal(err)
			}
			at := 0
			for _, w := range tt.want {
				i := strings.Index(got[at:], w)
				if i < 0 {
					t.Fatalf("%q missing or out of order in:\n%s", w, got)
				}
				at += i + len(w)
			}
			for _, g := range tt.gone {
				if strings.Contains(got, g) {
					t.Errorf("%q still there:\n%s", g, got)
				}
			}
			again, err := Replace(got, tt.harness, tt.section)
			if err != nil || again != got {
				t.Errorf("writing the same report twice changed the page (err %v)", err)
			}
		})
	}
}

func TestReplaceRefusesABrokenPage(t *testing.T) {
	for name, page := range map[string]string{
		"end before begin": End("burst") + "\n" + Begin("burst") + "\n",
		"no end":           Begin("burst") + "\nfigures\n",
		"twice":            Begin("burst") + "\n" + End("burst") + "\n" + Begin("burst") + "\n" + End("burst") + "\n",
	} {
		if _, err := Replace(page, "burst", "x\n"); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
