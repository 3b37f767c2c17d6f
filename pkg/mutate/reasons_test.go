package mutate

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestReasonsListsEveryReason: every Reason constant of the package is in Reasons, once.
func TestReasonsListsEveryReason(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var declared []Reason
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.CONST {
				continue
			}
			for _, spec := range g.Specs {
				v := spec.(*ast.ValueSpec)
				if id, ok := v.Type.(*ast.Ident); ok && id.Name == "Reason" {
					for _, val := range v.Values {
						lit := val.(*ast.BasicLit)
						declared = append(declared, Reason(lit.Value[1:len(lit.Value)-1]))
					}
				}
			}
		}
	}
	got := slices.Clone(Reasons)
	slices.Sort(got)
	slices.Sort(declared)
	if len(declared) < 20 || !slices.Equal(got, declared) {
		t.Errorf("Reasons %v\nwant every declared Reason %v", got, declared)
	}
}
