// Command release is `make release VERSION=x.y.z REGISTRY=host/path`: one daemonless,
// reproducible release of flowauth, pushed to an OCI registry and signed:
//
//   - the webhook image for linux/amd64 and linux/arm64, built as the Dockerfile describes it
//     (internal/image), pushed as REGISTRY/flowauth:VERSION and named by digest from then on;
//   - a CycloneDX SBOM of the image, from the binary's own module list, attached to the image as
//     a signed cosign attestation;
//   - a cosign signature of the image digest;
//   - the chart with version and appVersion VERSION and the image pinned by digest, pushed as
//     oci://REGISTRY/charts/flowauth:VERSION and signed (installed by its digest);
//   - the kubectl plugin's archives and krew manifest, checksums.txt, and the CHANGELOG's entry,
//     in bin/release/VERSION.
//
// The key is cosign's, given by file (COSIGN_KEY) with its password in COSIGN_PASSWORD. A public CI
// with an identity provider would sign keyless instead: see .github/workflows/release.yml.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/flowauth/flowauth/internal/image"
)

type options struct {
	version, registry, key, out string
	allowUnreleased, keyless    bool
	tlog                        bool
	cosign, helm                string
	chart                       string
}

func main() {
	var o options
	flag.StringVar(&o.version, "version", "", "the release's version, x.y.z (required)")
	flag.StringVar(&o.registry, "registry", "", "where to push, host[:port]/path (required); a registry on 127.0.0.1 or localhost is reached over plain HTTP")
	flag.StringVar(&o.key, "key", os.Getenv("COSIGN_KEY"), "cosign private key file (COSIGN_KEY); its password comes from COSIGN_PASSWORD")
	flag.StringVar(&o.out, "out", "", "folder for the release's files (default bin/release/VERSION)")
	flag.BoolVar(&o.keyless, "keyless", false, "sign keyless (Sigstore: a Fulcio certificate for the CI's OIDC identity, entries in Rekor) instead of with -key; needs the identity provider and Sigstore reachable")
	flag.BoolVar(&o.tlog, "tlog", false, "with -key, also record the signatures in Sigstore's transparency log (Rekor): a public CI does, so users verify without --insecure-ignore-tlog; nothing here can reach it")
	flag.BoolVar(&o.allowUnreleased, "allow-unreleased", false, "accept a CHANGELOG whose entry for the changes is still [Unreleased] (tests, dry runs)")
	flag.StringVar(&o.cosign, "cosign", "bin/cosign", "cosign binary (hack/tools.sh cosign)")
	flag.StringVar(&o.helm, "helm", "bin/helm", "helm binary (hack/tools.sh helm)")
	flag.StringVar(&o.chart, "chart", "charts/flowauth", "the chart to release (tests release an older chart's shape from a copy)")
	flag.Parse()
	if err := run(context.Background(), o); err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(1)
	}
}

var semver = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$`)

// Release is what one release pushed, by digest.
type Release struct {
	Version, Image, Chart, SBOM string
	SBOMPackages                int
}

func run(ctx context.Context, o options) error {
	switch {
	case !semver.MatchString(o.version):
		return fmt.Errorf("VERSION %q is not x.y.z", o.version)
	case o.registry == "" || strings.Contains(o.registry, "://"):
		return fmt.Errorf("REGISTRY %q: want host[:port]/path, no scheme", o.registry)
	case o.key == "" && !o.keyless:
		return errors.New("no signing key: set COSIGN_KEY to a cosign private key file (cosign generate-key-pair makes one), or sign -keyless")
	}
	notes, err := changelogEntry("CHANGELOG.md", o.version, o.allowUnreleased)
	if err != nil {
		return err
	}
	if o.out == "" {
		o.out = filepath.Join("bin", "release", o.version)
	}
	if err := os.RemoveAll(o.out); err != nil {
		return err
	}
	if err := os.MkdirAll(o.out, 0o750); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "flowauth-release-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(work) }()
	r, err := Publish(ctx, o, work)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(o.out, "sbom.cdx.json"), []byte(r.SBOM), 0o600); err != nil {
		return err
	}
	plugin := exec.CommandContext(ctx, "go", "run", "./hack/plugin-dist", "-tag", "v"+o.version, "-out", o.out)
	if b, err := plugin.CombinedOutput(); err != nil {
		return fmt.Errorf("plugin archives: %w\n%s", err, b)
	}
	if err := writeChecksums(o.out); err != nil {
		return err
	}
	pub := strings.TrimSuffix(o.key, ".key") + ".pub"
	flags := ""
	if !o.tlog && !o.keyless {
		flags += " --insecure-ignore-tlog"
	}
	if plainHTTP(o.registry) {
		flags += " --allow-http-registry"
	}
	// The release's notes name what was published and how to verify and install it: where a
	// user reads the registry, the digests and the key from.
	helmFlags := ""
	if plainHTTP(o.registry) {
		helmFlags = " --plain-http"
	}
	install := fmt.Sprintf(`  cosign verify --key flowauth-release.pub%s %s
  cosign verify-attestation --key flowauth-release.pub --type cyclonedx%s %s
  cosign verify --key flowauth-release.pub%s %s
  helm install flowauth oci://%s%s -n flowauth-system --create-namespace
`, flags, r.Image, flags, r.Image, flags, r.Chart, r.Chart, helmFlags)
	notes = append(notes, fmt.Sprintf("\n### Verify and install\n\nImage %s (linux/amd64, linux/arm64), chart %s; the public key is this release's flowauth-release.pub.\nInstall by digest: what was verified is what is installed.\n\n```sh\n%s```\n",
		r.Image, r.Chart, strings.ReplaceAll(install, "\n  ", "\n")[2:])...)
	if err := os.WriteFile(filepath.Join(o.out, "RELEASE-NOTES.md"), notes, 0o600); err != nil {
		return err
	}
	if key, err := os.ReadFile(pub); err == nil {
		if err := os.WriteFile(filepath.Join(o.out, "flowauth-release.pub"), key, 0o600); err != nil { //nolint:gosec // the release folder this command was given
			return err
		}
	}
	fmt.Printf(`flowauth %s
image:  %s (linux/amd64, linux/arm64)
sbom:   CycloneDX, %d packages, attached to the image as a signed attestation
chart:  %s
files:  %s (plugin archives, krew manifest, checksums.txt, sbom.cdx.json, RELEASE-NOTES.md, flowauth-release.pub)

verify, then install by digest (what was verified is what is installed), with flowauth-release.pub from %s:
%s`, o.version, r.Image, r.SBOMPackages, r.Chart, o.out, pub, install)
	return nil
}

// Publish builds, pushes and signs the image, its SBOM and the chart, and returns their
// references by digest.
func Publish(ctx context.Context, o options, work string) (Release, error) {
	r := Release{Version: o.version}
	webhook, err := image.BuildWebhook(ctx, ".", work, o.version, image.WebhookPlatforms)
	if err != nil {
		return r, err
	}
	repo := o.registry + "/flowauth"
	digest, err := image.Push(ctx, repo+":"+o.version, webhook.Index)
	if err != nil {
		return r, err
	}
	r.Image = repo + "@" + digest.String()

	sbom, packages, err := SBOM(webhook.Binaries["amd64"], o.version, digest.String())
	if err != nil {
		return r, err
	}
	r.SBOM, r.SBOMPackages = string(sbom), packages
	predicate := filepath.Join(work, "sbom.cdx.json")
	if err := os.WriteFile(predicate, sbom, 0o600); err != nil {
		return r, err
	}
	if err := cosign(ctx, o, "sign", r.Image); err != nil {
		return r, err
	}
	if err := cosign(ctx, o, "attest", "--type", "cyclonedx", "--predicate", predicate, r.Image); err != nil {
		return r, err
	}

	chart, err := packageChart(ctx, o, work, repo, digest.String())
	if err != nil {
		return r, err
	}
	push := []string{"push", chart, "oci://" + o.registry + "/charts"}
	if plainHTTP(o.registry) {
		push = append(push, "--plain-http")
	}
	out, err := exec.CommandContext(ctx, o.helm, push...).CombinedOutput()
	if err != nil {
		return r, fmt.Errorf("helm %s: %w\n%s", strings.Join(push, " "), err, out)
	}
	m := regexp.MustCompile(`Digest: (sha256:[a-f0-9]{64})`).FindSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("helm push printed no digest:\n%s", out)
	}
	r.Chart = o.registry + "/charts/flowauth@" + string(m[1])
	if err := cosign(ctx, o, "sign", r.Chart); err != nil {
		return r, err
	}
	return r, nil
}

// cosign signs with the release key, writing no transparency-log entry (no log can be reached
// here); -keyless signs with the CI's identity and writes to Rekor.
func cosign(ctx context.Context, o options, verb string, args ...string) error {
	full := []string{verb, "--yes"}
	if !o.keyless {
		full = append(full, "--key", o.key, fmt.Sprintf("--tlog-upload=%t", o.tlog))
	}
	if plainHTTP(o.registry) {
		full = append(full, "--allow-http-registry")
	}
	full = append(full, args...)
	cmd := exec.CommandContext(ctx, o.cosign, full...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("cosign %s: %w\n%s", strings.Join(full, " "), err, out.String())
	}
	return nil
}

// packageChart copies the chart, sets its version, appVersion and image (by digest), and packages it.
func packageChart(ctx context.Context, o options, work, repo, digest string) (string, error) {
	dir := filepath.Join(work, "chart", "flowauth")
	if err := os.CopyFS(dir, os.DirFS(o.chart)); err != nil {
		return "", err
	}
	chartFile := filepath.Join(dir, "Chart.yaml")
	b, err := os.ReadFile(chartFile)
	if err != nil {
		return "", err
	}
	b = regexp.MustCompile(`(?m)^version: .*$`).ReplaceAll(b, []byte("version: "+o.version))
	b = regexp.MustCompile(`(?m)^appVersion: .*$`).ReplaceAll(b, []byte(fmt.Sprintf("appVersion: %q", o.version)))
	if err := os.WriteFile(chartFile, b, 0o600); err != nil { //nolint:gosec // the chart's copy in this command's temporary folder
		return "", err
	}
	valuesFile := filepath.Join(dir, "values.yaml")
	v, err := os.ReadFile(valuesFile)
	if err != nil {
		return "", err
	}
	v = regexp.MustCompile(`(?m)^  repository: .*$`).ReplaceAll(v, []byte("  repository: "+repo))
	v = regexp.MustCompile(`(?m)^  digest: ""$`).ReplaceAll(v, []byte("  digest: "+digest))
	if !bytes.Contains(v, []byte("  digest: "+digest)) {
		return "", fmt.Errorf("%s/values.yaml has no `  digest: \"\"` line to pin the image", o.chart)
	}
	if err := os.WriteFile(valuesFile, v, 0o600); err != nil { //nolint:gosec // the chart's copy in this command's temporary folder
		return "", err
	}
	out, err := exec.CommandContext(ctx, o.helm, "package", dir, "-d", work).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("helm package: %w\n%s", err, out)
	}
	return filepath.Join(work, "flowauth-"+o.version+".tgz"), nil
}

func plainHTTP(registry string) bool {
	host := strings.SplitN(registry, "/", 2)[0]
	return strings.HasPrefix(host, "127.0.0.1") || strings.HasPrefix(host, "localhost")
}

// changelogEntry returns CHANGELOG.md's section for version ("## [x.y.z] - date"); with
// allowUnreleased, the [Unreleased] section stands in for it.
func changelogEntry(path, version string, allowUnreleased bool) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	for _, heading := range []string{"## [" + version + "]", "## [Unreleased]"} {
		if heading == "## [Unreleased]" && !allowUnreleased {
			break
		}
		if i := bytes.Index(b, []byte(heading)); i >= 0 {
			section := b[i:]
			if j := bytes.Index(section[len(heading):], []byte("\n## [")); j >= 0 {
				section = section[:len(heading)+j+1]
			}
			return section, nil
		}
	}
	return nil, fmt.Errorf("%s has no entry for %s: add a `## [%s] - YYYY-MM-DD` section (Keep a Changelog)", path, version, version)
}

// SBOM is a CycloneDX 1.5 document of the binary's modules, as its build info records them
// (the modules compiled in, and the Go standard library), without a timestamp, so one binary
// gives one SBOM. It returns the document and how many packages it lists.
func SBOM(binary, version, imageDigest string) ([]byte, int, error) {
	info, err := buildinfo.ReadFile(binary)
	if err != nil {
		return nil, 0, fmt.Errorf("reading the build info of %s: %w", binary, err)
	}
	type component struct {
		Type    string `json:"type"`
		BOMRef  string `json:"bom-ref,omitempty"`
		Name    string `json:"name"`
		Version string `json:"version"`
		PURL    string `json:"purl,omitempty"`
	}
	purl := func(path, v string) string { return "pkg:golang/" + path + "@" + v }
	var components []component
	for _, d := range info.Deps {
		m := d
		if d.Replace != nil {
			m = d.Replace
		}
		components = append(components, component{Type: "library", BOMRef: purl(m.Path, m.Version), Name: m.Path, Version: m.Version, PURL: purl(m.Path, m.Version)})
	}
	sort.Slice(components, func(i, j int) bool { return components[i].Name < components[j].Name })
	goVersion := strings.TrimPrefix(info.GoVersion, "go")
	components = append(components, component{Type: "library", BOMRef: purl("stdlib", "v"+goVersion), Name: "stdlib", Version: "v" + goVersion, PURL: purl("stdlib", "v"+goVersion)})
	sum := sha256.Sum256([]byte(imageDigest))
	h := hex.EncodeToString(sum[:16])
	doc := map[string]any{
		"bomFormat":    "CycloneDX",
		"specVersion":  "1.5",
		"serialNumber": fmt.Sprintf("urn:uuid:%s-%s-%s-%s-%s", h[0:8], h[8:12], h[12:16], h[16:20], h[20:32]),
		"version":      1,
		"metadata": map[string]any{
			"component": component{Type: "container", BOMRef: "flowauth-webhook", Name: "flowauth/webhook", Version: version},
			"properties": []map[string]string{
				{"name": "flowauth:image-digest", "value": imageDigest},
				{"name": "flowauth:main-module", "value": info.Main.Path},
			},
		},
		"components": components,
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	return b, len(components), err
}

func writeChecksums(dir string) error {
	var lines []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() == "checksums.txt" {
			return err
		}
		b, err := os.ReadFile(path) //nolint:gosec // files this command wrote
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		rel, _ := filepath.Rel(dir, path)
		lines = append(lines, hex.EncodeToString(sum[:])+"  "+rel)
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(lines)
	return os.WriteFile(filepath.Join(dir, "checksums.txt"), []byte(strings.Join(lines, "\n")+"\n"), 0o600)
}
