package localcluster

import (
	"archive/tar"
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
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/flowauth/flowauth/internal/image"
)

// The images the node runs, all built here without a container daemon and pushed to the local
// registry, from which containerd pulls them as a cluster pulls from any registry.
const (
	WebhookRepository = "flowauth/webhook"
	ProbeRepository   = "flowauth/flow-run-probe"
	PauseRepository   = "flowauth/pause"
	ImageTag          = "local"
)

// WebhookPlatforms are the architectures the webhook image is built for (internal/image).
var WebhookPlatforms = image.WebhookPlatforms

//go:embed probe/flowauth-probe
var probeScript []byte

// ProbeCommand is where the probe lives in its image (on PATH).
const ProbeCommand = "/usr/local/bin/flowauth-probe"

// Images are the references of the pushed images, as a pod spec names them.
type Images struct {
	Webhook, Probe, Pause string
}

// buildImages builds the three images and pushes them to the registry at host: the webhook's for
// the platforms given (none: this machine's only, all a node here can run).
func buildImages(ctx context.Context, repoRoot, workDir, host string, platforms []v1.Platform) (Images, error) {
	if len(platforms) == 0 {
		platforms = []v1.Platform{{OS: "linux", Architecture: runtime.GOARCH}}
	}
	images := Images{
		Webhook: host + "/" + WebhookRepository + ":" + ImageTag,
		Probe:   host + "/" + ProbeRepository + ":" + ImageTag,
		Pause:   host + "/" + PauseRepository + ":" + ImageTag,
	}
	webhook, err := image.BuildWebhook(ctx, repoRoot, workDir, "local", platforms)
	if err != nil {
		return images, err
	}
	if err := push(ctx, images.Webhook, webhook.Index); err != nil {
		return images, err
	}

	here := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	pauseBin := filepath.Join(workDir, "image-pause")
	if err := image.GoBuild(ctx, repoRoot, pauseBin, "./test/localcluster/pause", runtime.GOARCH, "-s -w"); err != nil {
		return images, err
	}
	pause, err := image.Of(here, v1.Config{Entrypoint: []string{"/pause"}, User: "65535:65535"}, image.FileLayer{Path: "pause", Src: pauseBin, Mode: 0o755})
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
	probe, err := image.Of(here, v1.Config{
		Cmd: []string{ProbeCommand},
		Env: []string{
			"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			// Flow runs here often have a read-only root filesystem: Python must not try to
			// write bytecode next to the modules.
			"PYTHONDONTWRITEBYTECODE=1",
		},
	}, base, image.FileLayer{Path: ProbeCommand[1:], Src: script, Mode: 0o755})
	if err != nil {
		return images, err
	}
	return images, push(ctx, images.Probe, probe)
}

func push(ctx context.Context, ref string, what remote.Taggable) error {
	_, err := image.Push(ctx, ref, what)
	return err
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
