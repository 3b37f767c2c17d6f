package node

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flowauth/flowauth/test/localcluster"
)

// release is one `make release` into the node's registry.
type release struct {
	version, image, chart, registry string
	// dir holds what make release wrote: RELEASE-NOTES.md, flowauth-release.pub, ...
	dir string
}

// makeRelease runs `make release`'s command for version into the node's registry, signing with key;
// chartDir is the chart released (charts/flowauth).
func makeRelease(t *testing.T, version, key, chartDir string) release {
	t.Helper()
	host := strings.SplitN(cluster.Images.Webhook, "/", 2)[0]
	r := release{version: version, registry: host + "/flowauth", dir: t.TempDir()}
	cmd := exec.CommandContext(context.Background(), "go", "run", "./hack/release", "-version", version, "-registry", r.registry,
		"-key", key, "-allow-unreleased", "-out", r.dir, "-chart", chartDir)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "COSIGN_PASSWORD=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make release VERSION=%s: %v\n%s", version, err, out)
	}
	t.Logf("make release VERSION=%s REGISTRY=%s:\n%s", version, r.registry, out)
	image := regexp.MustCompile(`(?m)^image:  (\S+)`).FindSubmatch(out)
	chart := regexp.MustCompile(`(?m)^chart:  (\S+)`).FindSubmatch(out)
	if image == nil || chart == nil {
		t.Fatalf("make release printed no image or chart reference:\n%s", out)
	}
	r.image, r.chart = string(image[1]), string(chart[1])
	return r
}

// cosign runs the cosign that hack/tools.sh built.
func cosign(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.CommandContext(context.Background(), filepath.Join(root, "bin", "cosign"), args...)
	cmd.Env = append(os.Environ(), "COSIGN_PASSWORD=")
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestReleaseInstallsFromOCIAndUpgradesWithoutLoss: two releases made by `make release` into the
// node's registry (the first made twice: one image digest) verify with cosign (image, SBOM
// attestation, chart), as their notes say, and an unsigned image under the same tag does not. The
// first is installed from the OCI registry by its notes' command and runs its signed image by
// digest; Getting started's flow run completes on it, as written; it is upgraded to the second as
// docs/install.md says (the first's chart has a value the second renamed: --reuse-values is refused,
// --reset-then-reuse-values keeps the user's values) and rolled back, under a steady stream of
// flow-run pod creations: none fails and every one is injected. The suite's own installation is put
// back at the end.
func TestReleaseInstallsFromOCIAndUpgradesWithoutLoss(t *testing.T) {
	needNode(t)
	keys := t.TempDir()
	if out, err := cosign(t, "generate-key-pair", "--output-key-prefix", filepath.Join(keys, "release")); err != nil {
		t.Fatalf("cosign generate-key-pair: %v\n%s", err, out)
	}
	key, pub := filepath.Join(keys, "release.key"), filepath.Join(keys, "release.pub")
	// The first release's chart has a value the second's no longer has (a rename, as denialsPer15m
	// was): the upgrade docs/install.md gives must pass over it, and the one it warns of must not.
	older := chartWithFormerValue(t)
	first, second := makeRelease(t, "0.9.0", key, older), makeRelease(t, "0.9.1", key, "charts/flowauth")
	again := makeRelease(t, "0.9.0", key, older)
	if again.image != first.image {
		t.Errorf("the same commit released twice gave two image digests: %s and %s", first.image, again.image)
	}

	verify := func(args ...string) (string, error) {
		return cosign(t, append([]string{args[0], "--key", pub, "--insecure-ignore-tlog", "--allow-http-registry"}, args[1:]...)...)
	}
	// Each release's notes say how to verify and install it: run their cosign lines as written,
	// in the release's folder (where its flowauth-release.pub is).
	installLine := map[string][]string{}
	for _, r := range []release{first, second} {
		lines := releaseNotesCommands(t, r)
		for _, line := range lines {
			switch line[0] {
			case "cosign":
				cmd := exec.CommandContext(context.Background(), filepath.Join(root, "bin", "cosign"), line[1:]...)
				cmd.Dir, cmd.Env = r.dir, append(os.Environ(), "COSIGN_PASSWORD=")
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Errorf("%s (from RELEASE-NOTES.md): %v\n%s", strings.Join(line, " "), err, out)
				} else {
					t.Logf("%s: verified (%d bytes of payload)", strings.Join(line, " "), len(out))
				}
			case "helm":
				installLine[r.version] = line
			}
		}
		if installLine[r.version] == nil || len(lines) != 4 {
			t.Fatalf("release %s's notes give %d commands, no helm install among them: %q", r.version, len(lines), lines)
		}
	}
	// Someone pushes another image under the first release's tag: it carries no signature.
	tag := first.registry + "/flowauth:" + first.version
	ref, err := name.ParseReference(tag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, mutate.MediaType(img, "application/vnd.oci.image.manifest.v1+json"), remote.WithContext(context.Background())); err != nil {
		t.Fatal(err)
	}
	if out, err := verify("verify", tag); err == nil {
		t.Errorf("cosign verify passed for an unsigned image pushed under %s:\n%s", tag, out)
	} else {
		t.Logf("cosign verify of the image swapped in under %s fails: %s", tag, localcluster.LastLines(out, 1))
	}

	// Install as users do: the suite's installation (from charts/flowauth) makes way for the first
	// release from the OCI registry with its default values; then, under a steady stream of flow-run
	// pods (one every 100 ms, held Pending: no node matches), an upgrade to the second and a
	// rollback to the first.
	fns := localcluster.FlowauthNamespace
	helm := func(args ...string) {
		t.Helper()
		start := time.Now()
		out, err := cluster.Helm(context.Background(), args...)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("helm %s (%s): %s", strings.Join(args[:2], " "), time.Since(start).Round(time.Second), localcluster.LastLines(out, 1))
	}
	t.Cleanup(func() {
		// Put the suite's installation back for the tests after this one.
		_, _ = cluster.Helm(context.Background(), "uninstall", "flowauth", "-n", fns, "--wait")
		if err := cluster.InstallFlowauth(context.Background()); err != nil {
			t.Errorf("reinstalling the suite's chart: %v", err)
		}
	})
	// By digest, as docs/install.md says: what was verified is what is installed.
	chart := func(r release) string { return "oci://" + r.chart }
	helm("uninstall", "flowauth", "-n", fns, "--wait")
	// The install line of the release's notes, as written (plus --wait and a value of the user's).
	helm(append(installLine[first.version][1:], "--set", "podLabels.team=platform", "--wait", "--timeout", "5m")...)
	if !slices.Contains(installLine[first.version], chart(first)) {
		t.Errorf("the notes install %q, not the chart by digest %s", installLine[first.version], chart(first))
	}
	requireWebhookImage(t, first.image)
	// The first flow run, as docs/getting-started.md has a reader make it, on the release's install.
	output, _, _ := newReader(t).runPage(t, "docs/getting-started.md")
	checkShownOutput(t, "docs/getting-started.md", output)
	ns := newNamespace(t, "upgrade")
	kubectl(t, "-n", ns, "create", "secret", "generic", "github-access-token", "--from-literal=token=upgrade-stream")
	stream := cluster.StartFlowRunStream(ns, 100*time.Millisecond)
	// --reuse-values keeps the first chart's defaults, formerName among them, and the second's
	// schema refuses it; docs/install.md says so and gives --reset-then-reuse-values, which keeps
	// only what the user set.
	if out, err := cluster.Helm(context.Background(), "upgrade", "flowauth", chart(second), "--plain-http", "-n", fns, "--reuse-values", "--wait", "--timeout", "5m"); err == nil || !strings.Contains(out+err.Error(), "formerName") {
		t.Errorf("helm upgrade --reuse-values across a renamed value: err %v, want the new schema refusing formerName\n%s", err, out)
	} else {
		t.Logf("helm upgrade --reuse-values across a renamed value is refused, as docs/install.md says: %s", localcluster.LastLines(err.Error(), 2))
	}
	helm("upgrade", "flowauth", chart(second), "--plain-http", "-n", fns, "--reset-then-reuse-values", "--wait", "--timeout", "5m")
	requireWebhookImage(t, second.image)
	if got := kubectl(t, "-n", fns, "get", "deployment", "flowauth", "-o", "jsonpath={.spec.template.metadata.labels.team}"); got != "platform" {
		t.Errorf("after helm upgrade --reset-then-reuse-values the user's podLabels.team is %q, want platform", got)
	}
	helm("rollback", "flowauth", "1", "-n", fns, "--wait", "--timeout", "5m")
	requireWebhookImage(t, first.image)
	all := stream.Stop()
	failed, _, firstErr := localcluster.Failures(all)
	t.Logf("during the upgrade and the rollback: %d flow-run pods created, %d failed or stored without their injection", len(all), failed)
	if failed > 0 || len(all) == 0 {
		t.Errorf("%d of %d creations failed or were stored without their injection; first: %v", failed, len(all), firstErr)
	}
}

// chartWithFormerValue is a copy of charts/flowauth whose values and schema also have formerName,
// a value the current chart does not have: the shape of an older release's chart after a rename.
func chartWithFormerValue(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "flowauth")
	if err := os.CopyFS(dir, os.DirFS(filepath.Join(root, "charts", "flowauth"))); err != nil {
		t.Fatal(err)
	}
	values := filepath.Join(dir, "values.yaml")
	v, err := os.ReadFile(values)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(values, append(v, []byte("\n# formerName: renamed in the next release.\nformerName: old\n")...), 0o600); err != nil { //nolint:gosec // the chart's copy in the test's temporary folder
		t.Fatal(err)
	}
	schemaFile := filepath.Join(dir, "values.schema.json")
	raw, err := os.ReadFile(schemaFile)
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	if err := json.Unmarshal(raw, &schema); err != nil {
		t.Fatal(err)
	}
	schema["properties"].(map[string]any)["formerName"] = map[string]any{"type": "string"}
	raw, err = json.MarshalIndent(schema, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(schemaFile, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// releaseNotesCommands are the commands of the sh block of a release's RELEASE-NOTES.md, each
// split into words.
func releaseNotesCommands(t *testing.T, r release) [][]string {
	t.Helper()
	notes, err := os.ReadFile(filepath.Join(r.dir, "RELEASE-NOTES.md"))
	if err != nil {
		t.Fatal(err)
	}
	block := regexp.MustCompile("(?s)```sh\n(.*?)```").FindSubmatch(notes)
	if block == nil {
		t.Fatalf("release %s's RELEASE-NOTES.md has no sh block:\n%s", r.version, notes)
	}
	var out [][]string
	for line := range strings.Lines(string(block[1])) {
		if f := strings.Fields(line); len(f) > 0 {
			out = append(out, f)
		}
	}
	return out
}

// requireWebhookImage waits until every replica of the webhook runs image and is ready.
func requireWebhookImage(t *testing.T, image string) {
	t.Helper()
	eventually(t, "every webhook replica running "+image, func() (bool, string) {
		var d appsv1.Deployment
		if err := cluster.Client.Get(context.Background(), client.ObjectKey{Namespace: localcluster.FlowauthNamespace, Name: "flowauth"}, &d); err != nil {
			return false, err.Error()
		}
		got := d.Spec.Template.Spec.Containers[0].Image
		ready := d.Status.UpdatedReplicas == *d.Spec.Replicas && d.Status.ReadyReplicas == *d.Spec.Replicas && d.Status.Replicas == *d.Spec.Replicas
		return got == image && ready, fmt.Sprintf("image %s, %d/%d updated, %d ready, %d in all", got, d.Status.UpdatedReplicas, *d.Spec.Replicas, d.Status.ReadyReplicas, d.Status.Replicas)
	})
}
