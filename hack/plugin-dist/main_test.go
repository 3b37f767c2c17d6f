package main

import (
	"os"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestKrewManifestRenders: .krew.yaml renders, as krew-release-bot renders it, into a Plugin
// with one platform per archive, each installing the kubectl-flowauth binary.
func TestKrewManifestRenders(t *testing.T) {
	src, err := os.ReadFile("../../.krew.yaml")
	if err != nil {
		t.Fatal(err)
	}
	sums := map[string]string{}
	for _, a := range archives(src) {
		sums[a[0]] = strings.Repeat("ab", 32)
	}
	out, err := renderManifest(src, "v9.9.9", sums)
	if err != nil {
		t.Fatal(err)
	}
	var plugin struct {
		APIVersion, Kind string
		Metadata         struct{ Name string }
		Spec             struct {
			Version, ShortDescription, Description, Homepage string
			Platforms                                        []struct {
				Selector         struct{ MatchLabels map[string]string }
				URI, Sha256, Bin string
			}
		}
	}
	if err := yaml.UnmarshalStrict(out, &plugin); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if plugin.Kind != "Plugin" || plugin.Metadata.Name != "flowauth" || plugin.Spec.Version != "v9.9.9" || plugin.Spec.ShortDescription == "" {
		t.Errorf("manifest: %+v", plugin)
	}
	var platforms []string
	for _, p := range plugin.Spec.Platforms {
		platform := p.Selector.MatchLabels["os"] + "_" + p.Selector.MatchLabels["arch"]
		platforms = append(platforms, platform)
		if p.Bin != "kubectl-flowauth" || len(p.Sha256) != 64 || !strings.HasSuffix(p.URI, "/v9.9.9/kubectl-flowauth_"+platform+".tar.gz") {
			t.Errorf("platform %s: %+v", platform, p)
		}
	}
	if !slices.Equal(platforms, []string{"linux_amd64", "linux_arm64", "darwin_amd64", "darwin_arm64"}) {
		t.Errorf("platforms %v", platforms)
	}
}
