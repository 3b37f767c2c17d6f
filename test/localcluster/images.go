package localcluster

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The images the node runs, all built here without a container daemon and pushed to the local
// registry, from which containerd pulls them as a cluster pulls from any registry.
const (
	WebhookRepository = "flowauth/webhook"
	ProbeRepository   = "flowauth/flow-run-probe"
	PauseRepository   = "flowauth/pause"
	ImageTag          = "local"
)

// WebhookImageConfig is the webhook image's runtime config. It is the Dockerfile's final stage
// (USER, ENTRYPOINT, EXPOSE) said again for the Go-native build: TestWebhookImageMatchesTheDockerfile
// holds the two together.
var WebhookImageConfig = v1.Config{
	User:         "65532:65532",
	Entrypoint:   []string{"/webhook"},
	ExposedPorts: map[string]struct{}{"9443/tcp": {}, "8080/tcp": {}, "8081/tcp": {}},
}

// WebhookPlatforms are the architectures the webhook image is built for: cross-compiling a static
// Go binary costs one more build, so the image is multi-arch like a released one.
var WebhookPlatforms = []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}}

//go:embed probe/flowauth-probe
var probeScript []byte

// ProbeCommand is where the probe lives in its image (on PATH).
const ProbeCommand = "/usr/local/bin/flowauth-probe"

// Images are the references of the pushed images, as a pod spec names them.
type Images struct {
	Webhook, Probe, Pause string
}

// buildImages builds the three images and pushes them to the registry at host.
func buildImages(ctx context.Context, repoRoot, workDir, host string) (Images, error) {
	images := Images{
		Webhook: host + "/" + WebhookRepository + ":" + ImageTag,
		Probe:   host + "/" + ProbeRepository + ":" + ImageTag,
		Pause:   host + "/" + PauseRepository + ":" + ImageTag,
	}
	goVersion, err := DockerfileGoVersion(repoRoot)
	if err != nil {
		return images, err
	}
	var adds []mutate.IndexAddendum
	for _, p := range WebhookPlatforms {
		bin := filepath.Join(workDir, "image-webhook-"+p.Architecture)
		// The Dockerfile's build command, with its Go version.
		if err := goBuild(ctx, repoRoot, bin, "./cmd/webhook", p.Architecture, "GOTOOLCHAIN=go"+goVersion); err != nil {
			return images, err
		}
		img, err := imageOf(p, WebhookImageConfig, fileLayer{"webhook", bin, 0o755})
		if err != nil {
			return images, err
		}
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
	}
	index := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), adds...)
	if err := push(ctx, images.Webhook, index); err != nil {
		return images, err
	}

	here := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	pauseBin := filepath.Join(workDir, "image-pause")
	if err := goBuild(ctx, repoRoot, pauseBin, "./test/localcluster/pause", runtime.GOARCH); err != nil {
		return images, err
	}
	pause, err := imageOf(here, v1.Config{Entrypoint: []string{"/pause"}, User: "65535:65535"}, fileLayer{"pause", pauseBin, 0o755})
	if err != nil {
		return images, err
	}
	if err := push(ctx, images.Pause, pause); err != nil {
		return images, err
	}

	rootfs := filepath.Join(repoRoot, "bin", "probe-rootfs.tar.gz")
	base, err := tarball.LayerFromFile(rootfs, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return images, fmt.Errorf("the probe image's root filesystem %s (hack/tools.sh probe-rootfs builds it): %w", rootfs, err)
	}
	script := filepath.Join(workDir, "flowauth-probe")
	// Its mode in the image is the layer's (0755), not this file's.
	if err := os.WriteFile(script, probeScript, 0o600); err != nil {
		return images, err
	}
	probe, err := imageOf(here, v1.Config{
		Cmd: []string{ProbeCommand},
		Env: []string{
			"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			// Flow runs here often have a read-only root filesystem: Python must not try to
			// write bytecode next to the modules.
			"PYTHONDONTWRITEBYTECODE=1",
		},
	}, base, fileLayer{ProbeCommand[1:], script, 0o755})
	if err != nil {
		return images, err
	}
	return images, push(ctx, images.Probe, probe)
}

func goBuild(ctx context.Context, repoRoot, out, pkg, arch string, env ...string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
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

// fileLayer is one file, owned by root, as a layer.
type fileLayer struct {
	path string // inside the image, without the leading /
	src  string
	mode int64
}

func (f fileLayer) layer() (v1.Layer, error) {
	data, err := os.ReadFile(f.src)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	// Parent folders first, outermost first, as image builders write them.
	var dirs []string
	for dir := filepath.Dir(f.path); dir != "."; dir = filepath.Dir(dir) {
		dirs = append([]string{dir}, dirs...)
	}
	for _, dir := range dirs {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: 0o755}); err != nil {
			return nil, err
		}
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.path, Mode: f.mode, Size: int64(len(data))}); err != nil {
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

// imageOf is an OCI image of the given layers (v1.Layer or fileLayer) for platform p with cfg.
func imageOf(p v1.Platform, cfg v1.Config, layers ...any) (v1.Image, error) {
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	for _, l := range layers {
		if f, ok := l.(fileLayer); ok {
			var err error
			if l, err = f.layer(); err != nil {
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

func push(ctx context.Context, ref string, what remote.Taggable) error {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return err
	}
	switch w := what.(type) {
	case v1.ImageIndex:
		err = remote.WriteIndex(r, w, remote.WithContext(ctx))
	case v1.Image:
		err = remote.Write(r, w, remote.WithContext(ctx))
	}
	if err != nil {
		return fmt.Errorf("pushing %s: %w", ref, err)
	}
	return nil
}

// pulled is the image ref names in the registry, for platform p, as a node pulls it.
func pulled(ctx context.Context, ref string, p v1.Platform) (v1.Image, error) {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return nil, err
	}
	return remote.Image(r, remote.WithContext(ctx), remote.WithPlatform(p))
}

// PulledConfig reads an image's config from the registry, as a node would, for platform p.
func PulledConfig(ctx context.Context, ref string, p v1.Platform) (*v1.ConfigFile, error) {
	img, err := pulled(ctx, ref, p)
	if err != nil {
		return nil, err
	}
	return img.ConfigFile()
}

// startRegistry runs the CNCF distribution registry on a free 127.0.0.1 port with its storage in
// dir, and waits until it answers.
func (c *Cluster) startRegistry(ctx context.Context, bin, dir string) (string, error) {
	addr, err := FreeAddr()
	if err != nil {
		return "", err
	}
	config := filepath.Join(dir, "registry.yaml")
	if err := os.WriteFile(config, fmt.Appendf(nil, `version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: %s}
  delete: {enabled: true}
http: {addr: %s, secret: %s}
`, filepath.Join(dir, "registry"), addr, rand.Text()), 0o600); err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, bin, "serve", config)
	// distribution exports traces to an OTLP collector on localhost by default: there is none.
	cmd.Env = append(os.Environ(), "OTEL_SDK_DISABLED=true", "OTEL_TRACES_EXPORTER=none")
	cmd.Stdout, cmd.Stderr = c.nodeLog("registry"), c.nodeLog("registry")
	if err := c.runNode(cmd); err != nil {
		return "", fmt.Errorf("starting the registry: %w", err)
	}
	return addr, waitFor(ctx, 30*time.Second, "the registry at "+addr, func() error {
		resp, err := http.Get("http://" + addr + "/v2/") //nolint:noctx // bounded by waitFor's deadline
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /v2/: %s", resp.Status)
		}
		return nil
	})
}

// stopWaiting is an error of check that waitFor returns at once: waiting longer cannot help.
type stopWaiting struct{ error }

// waitFor calls check until it returns nil, at most for d.
func waitFor(ctx context.Context, d time.Duration, what string, check func() error) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		err := check()
		if err == nil {
			return nil
		}
		if errors.As(err, new(stopWaiting)) {
			return fmt.Errorf("%s: %w", what, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last: %w)", what, ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// PulledFile reads one file (path without the leading /) out of an image in the registry, for
// platform p.
func PulledFile(ctx context.Context, ref string, p v1.Platform, path string) ([]byte, error) {
	img, err := pulled(ctx, ref, p)
	if err != nil {
		return nil, err
	}
	rc := mutate.Extract(img)
	defer func() { _ = rc.Close() }()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err != nil {
			return nil, fmt.Errorf("%s in %s: %w", path, ref, err)
		}
		if h.Name == path {
			return io.ReadAll(tr)
		}
	}
}
