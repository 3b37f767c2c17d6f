// Command plugin-dist is `make plugin-dist`: the kubectl-flowauth archives krew installs (one per
// platform of .krew.yaml, each holding the binary and the README), and .krew.yaml
// rendered with their addresses and sha256 sums into bin/dist/flowauth.yaml, as krew-release-bot
// renders it at a release tag.
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"text/template"
)

func main() {
	tag := flag.String("tag", "v0.1.0", "the release tag the manifest names")
	out := flag.String("out", "bin/dist", "the folder the archives and the manifest are written to")
	flag.Parse()
	if err := run(*tag, *out); err != nil {
		fmt.Fprintln(os.Stderr, "plugin-dist:", err)
		os.Exit(1)
	}
}

func run(tag, out string) error {
	if err := os.MkdirAll(out, 0o750); err != nil {
		return err
	}
	src, err := os.ReadFile(".krew.yaml")
	if err != nil {
		return err
	}
	sums := map[string]string{}
	for _, m := range archives(src) {
		archive := filepath.Join(out, m[0])
		if err := build(m[1], m[2], archive); err != nil {
			return err
		}
		b, err := os.ReadFile(archive) //nolint:gosec // bin/dist/<a name .krew.yaml gives>: this repository's own file
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		sums[m[0]] = hex.EncodeToString(sum[:])
		fmt.Println(archive, sums[m[0]])
	}
	manifest, err := renderManifest(src, tag, sums)
	if err != nil {
		return err
	}
	path := filepath.Join(out, "flowauth.yaml")
	fmt.Println(path)
	return os.WriteFile(path, manifest, 0o600) //nolint:gosec // bin/dist/flowauth.yaml
}

// archives are the archive names .krew.yaml refers to, with their platform.
func archives(src []byte) [][]string {
	return regexp.MustCompile(`kubectl-flowauth_(\w+)_(\w+)\.tar\.gz`).FindAllStringSubmatch(string(src), -1)
}

// renderManifest fills .krew.yaml's template as krew-release-bot does: the tag, and for each
// archive its address and sha256 (sums, by archive name).
func renderManifest(src []byte, tag string, sums map[string]string) ([]byte, error) {
	t, err := template.New("krew").Funcs(template.FuncMap{
		"addURIAndSha": func(uri, tag string) (string, error) {
			uri = strings.ReplaceAll(uri, "{{ .TagName }}", tag)
			sum, ok := sums[filepath.Base(uri)]
			if !ok {
				return "", fmt.Errorf("no archive built for %s", uri)
			}
			return fmt.Sprintf("uri: %s\n    sha256: %s", uri, sum), nil
		},
	}).Parse(string(src))
	if err != nil {
		return nil, err
	}
	var manifest bytes.Buffer
	if err := t.Execute(&manifest, map[string]string{"TagName": tag}); err != nil {
		return nil, err
	}
	return manifest.Bytes(), nil
}

// build cross-compiles the plugin and packs it with the README into a .tar.gz.
func build(goos, goarch, archive string) error {
	dir, err := os.MkdirTemp("", "plugin-dist-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	bin := filepath.Join(dir, "kubectl-flowauth")
	cmd := exec.CommandContext(context.Background(), "go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./cmd/kubectl-flowauth")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building for %s/%s: %w\n%s", goos, goarch, err, b)
	}
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for name, path := range map[string]string{"kubectl-flowauth": bin, "README.md": "README.md"} {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		mode := int64(0o644)
		if name == "kubectl-flowauth" {
			mode = 0o755
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(b))}); err != nil {
			return err
		}
		if _, err := tw.Write(b); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := gz.Close(); err != nil {
		return err
	}
	return os.WriteFile(archive, buf.Bytes(), 0o600) //nolint:gosec // bin/dist/<a name .krew.yaml gives>
}
