// Package image builds OCI images without a container daemon: flowauth's webhook image as the
// Dockerfile describes it (BuildWebhook), for the node tests and for `make release`, and the
// small helpers the test images use. Builds are reproducible: the binaries are built with
// -trimpath by the Dockerfile's Go, and no layer or config carries a timestamp, so one commit
// gives one digest.
package image

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// WebhookConfig is the webhook image's runtime config. It is the Dockerfile's final stage
// (USER, ENTRYPOINT, EXPOSE) said again for the Go-native build: TestWebhookImageMatchesTheDockerfile
// holds the two together.
var WebhookConfig = v1.Config{
	User:         "65532:65532",
	Entrypoint:   []string{"/webhook"},
	ExposedPorts: map[string]struct{}{"9443/tcp": {}, "8080/tcp": {}, "8081/tcp": {}},
}

// WebhookPlatforms are the architectures the webhook image is built for.
var WebhookPlatforms = []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}}

// Webhook is a built webhook image: the multi-arch index and each platform's binary.
type Webhook struct {
	Index    v1.ImageIndex
	Binaries map[string]string // architecture → path of its binary
}

// BuildWebhook builds ./cmd/webhook for the platforms (a release's are WebhookPlatforms) as the
// Dockerfile builds it (its Go version, CGO off, -trimpath, stripped), with version written into
// the binary, and returns the OCI index of the images. The binaries are written to workDir.
func BuildWebhook(ctx context.Context, repoRoot, workDir, version string, platforms []v1.Platform) (Webhook, error) {
	goVersion, err := DockerfileGoVersion(repoRoot)
	if err != nil {
		return Webhook{}, err
	}
	w := Webhook{Binaries: map[string]string{}}
	var adds []mutate.IndexAddendum
	for _, p := range platforms {
		bin := filepath.Join(workDir, "webhook-linux-"+p.Architecture)
		if err := GoBuild(ctx, repoRoot, bin, "./cmd/webhook", p.Architecture, "-s -w -X main.version="+version, "GOTOOLCHAIN=go"+goVersion); err != nil {
			return Webhook{}, err
		}
		w.Binaries[p.Architecture] = bin
		img, err := Of(p, WebhookConfig, FileLayer{Path: "webhook", Src: bin, Mode: 0o755})
		if err != nil {
			return Webhook{}, err
		}
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
	}
	w.Index = mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), adds...)
	return w, nil
}

// GoBuild builds pkg of repoRoot statically for linux/arch into out.
func GoBuild(ctx context.Context, repoRoot, out, pkg, arch, ldflags string, env ...string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags="+ldflags, "-o", out, pkg)
	cmd.Dir = repoRoot
	cmd.Env = append(append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s for linux/%s: %w\n%s", pkg, arch, err, b)
	}
	return nil
}

// DockerfileGoVersion is the Go version of the Dockerfile's build stage.
func DockerfileGoVersion(repoRoot string) (string, error) {
	src, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		return "", err
	}
	m := regexp.MustCompile(`(?m)^FROM golang:([0-9.]+) AS build$`).FindSubmatch(src)
	if m == nil {
		return "", errors.New("no `FROM golang:<version> AS build` line in the Dockerfile")
	}
	return string(m[1]), nil
}

// FileLayer is one file, owned by root, as a layer.
type FileLayer struct {
	Path string // inside the image, without the leading /
	Src  string
	Mode int64
}

// Layer writes the file (and its parent folders) as an uncompressed tar without timestamps.
func (f FileLayer) Layer() (v1.Layer, error) {
	data, err := os.ReadFile(f.Src)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	// Parent folders first, outermost first, as image builders write them.
	var dirs []string
	for dir := filepath.Dir(f.Path); dir != "."; dir = filepath.Dir(dir) {
		dirs = append([]string{dir}, dirs...)
	}
	for _, dir := range dirs {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: 0o755}); err != nil {
			return nil, err
		}
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.Path, Mode: f.Mode, Size: int64(len(data))}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(data); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.OCILayer))
}

// Of is an OCI image of the given layers (v1.Layer or FileLayer) for platform p with cfg.
func Of(p v1.Platform, cfg v1.Config, layers ...any) (v1.Image, error) {
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	for _, l := range layers {
		if f, ok := l.(FileLayer); ok {
			var err error
			if l, err = f.Layer(); err != nil {
				return nil, err
			}
		}
		var err error
		if img, err = mutate.AppendLayers(img, l.(v1.Layer)); err != nil {
			return nil, err
		}
	}
	file, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	file = file.DeepCopy()
	file.OS, file.Architecture, file.Variant = p.OS, p.Architecture, p.Variant
	file.Config = cfg
	return mutate.ConfigFile(img, file)
}

// Push writes an image or index to ref (a registry on 127.0.0.1 is reached over plain HTTP) and
// returns its digest.
func Push(ctx context.Context, ref string, what remote.Taggable) (v1.Hash, error) {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return v1.Hash{}, err
	}
	var digest v1.Hash
	switch w := what.(type) {
	case v1.ImageIndex:
		if digest, err = w.Digest(); err == nil {
			err = remote.WriteIndex(r, w, remote.WithContext(ctx))
		}
	case v1.Image:
		if digest, err = w.Digest(); err == nil {
			err = remote.Write(r, w, remote.WithContext(ctx))
		}
	}
	if err != nil {
		return v1.Hash{}, fmt.Errorf("pushing %s: %w", ref, err)
	}
	return digest, nil
}
