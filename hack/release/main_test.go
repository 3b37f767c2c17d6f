package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSBOMListsTheBinarysModules: the SBOM of a Go binary (this test's own) lists each module
// its build info records and the standard library, as CycloneDX purls, with no timestamp, and is
// the same document twice.
func TestSBOMListsTheBinarysModules(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	a, n, err := SBOM(self, "1.2.3", "sha256:abc")
	if err != nil {
		t.Fatal(err)
	}
	b, _, _ := SBOM(self, "1.2.3", "sha256:abc")
	if string(a) != string(b) {
		t.Error("two SBOMs of one binary differ")
	}
	var doc struct {
		BOMFormat, SpecVersion string
		Metadata               map[string]any
		Components             []struct{ Name, Version, PURL string }
	}
	if err := json.Unmarshal(a, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.BOMFormat != "CycloneDX" || doc.SpecVersion != "1.5" || len(doc.Components) != n || n < 2 {
		t.Fatalf("SBOM: %s", a)
	}
	if _, ok := doc.Metadata["timestamp"]; ok {
		t.Error("the SBOM carries a timestamp: two releases of one commit would differ")
	}
	var names []string
	for _, c := range doc.Components {
		names = append(names, c.Name)
		if c.PURL != "pkg:golang/"+c.Name+"@"+c.Version {
			t.Errorf("purl %q for %s %s", c.PURL, c.Name, c.Version)
		}
	}
	if !strings.Contains(strings.Join(names, " "), "github.com/google/go-containerregistry") || names[len(names)-1] != "stdlib" {
		t.Errorf("components %v lack a dependency of this binary or the standard library", names)
	}
}

func TestChangelogEntryIsRequired(t *testing.T) {
	file := filepath.Join(t.TempDir(), "CHANGELOG.md")
	if err := os.WriteFile(file, []byte("# Changelog\n\n## [Unreleased]\n- next\n\n## [1.0.0] - 2026-11-30\n### Added\n- all\n\n## [0.9.0] - 2026-10-01\n- old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := changelogEntry(file, "1.0.0", false)
	if err != nil || string(got) != "## [1.0.0] - 2026-11-30\n### Added\n- all\n\n" {
		t.Errorf("entry of 1.0.0 = %q, %v", got, err)
	}
	if _, err := changelogEntry(file, "1.1.0", false); err == nil || !strings.Contains(err.Error(), "no entry for 1.1.0") {
		t.Errorf("a version without an entry: %v", err)
	}
	if got, err := changelogEntry(file, "1.1.0", true); err != nil || !strings.HasPrefix(string(got), "## [Unreleased]") {
		t.Errorf("with -allow-unreleased: %q, %v", got, err)
	}
}
