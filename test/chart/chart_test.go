// Package chart tests the Helm chart and the kustomize config: rendered by the real helm and
// kubectl (built from Go modules into bin/), installed into a real kube-apiserver, and run end to
// end with the webhook binary provisioning its own certificate through cert-controller.
package chart

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/flowauth/flowauth/test/localcluster"
)

// commandTimeout bounds each helm run (kubectl runs are bounded by MustKubectl), so a hang fails one
// test instead of the suite.
const commandTimeout = 2 * time.Minute

var (
	root    string
	cluster *localcluster.Cluster
	helmEnv []string
)

func TestMain(m *testing.M) { os.Exit(runSuite(m)) }

func runSuite(m *testing.M) int {
	root, _ = filepath.Abs("../..")
	if _, err := os.Stat(filepath.Join(root, "bin", "helm")); err != nil {
		fmt.Fprintln(os.Stderr, "chart: bin/helm not found: run `hack/tools.sh helm` (make test does)")
		return 1
	}
	work, err := os.MkdirTemp("", "flowauth-chart-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(work) }()
	// helm keeps its cache and config in the work folder, never in the user's home.
	helmEnv = []string{"HELM_CACHE_HOME=" + filepath.Join(work, "helm-cache"), "HELM_CONFIG_HOME=" + filepath.Join(work, "helm-config"),
		"HELM_DATA_HOME=" + filepath.Join(work, "helm-data")}
	var log io.Writer
	if os.Getenv("E2E_VERBOSE") != "" {
		log = os.Stderr
	}
	cluster, err = localcluster.Start(context.Background(), localcluster.Options{RepoRoot: root, WorkDir: work, Log: log, NoWebhook: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, "chart:", err)
		return 1
	}
	defer func() { _ = cluster.Stop() }()
	return m.Run()
}

// helm runs bin/helm against the local cluster.
// checkoutImage is the image the tests give the checkout's chart, which names none and refuses to
// render the webhook without one (a user sets theirs, or installs a release's chart, which carries
// its image): the API server here runs no pods, so it is never pulled.
const checkoutImage = "image.repository=registry.invalid/flowauth"

// withCheckoutImage adds checkoutImage to a helm command that renders charts/flowauth with values of
// its own (not --reuse-values) and sets no image.repository.
func withCheckoutImage(args []string) []string {
	if len(args) == 0 || !slices.Contains([]string{"template", "install", "upgrade", "lint"}, args[0]) || !slices.Contains(args, "charts/flowauth") ||
		slices.Contains(args, "--reuse-values") || slices.ContainsFunc(args, func(a string) bool { return strings.Contains(a, "image.repository") }) {
		return args
	}
	return append(slices.Clone(args), "--set", checkoutImage)
}

func helm(args ...string) (stdout, stderr string, err error) {
	args = withCheckoutImage(args)
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(root, "bin", "helm"), args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), helmEnv...)
	cmd.Env = append(cmd.Env, "KUBECONFIG="+cluster.Kubeconfig)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

func mustHelm(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := helm(args...)
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, errOut)
	}
	return out
}

func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	return cluster.MustKubectl(t, args...)
}

// decode splits rendered YAML into objects.
func decode(t *testing.T, rendered string) []*unstructured.Unstructured {
	t.Helper()
	var objs []*unstructured.Unstructured
	d := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(rendered), 4096)
	for {
		var u unstructured.Unstructured
		if err := d.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return objs
			}
			t.Fatalf("decoding rendered YAML: %v", err)
		}
		if len(u.Object) > 0 {
			objs = append(objs, &u)
		}
	}
}

// find returns the one object of that kind, failing when there is not exactly one.
func find(t *testing.T, objs []*unstructured.Unstructured, kind string) *unstructured.Unstructured {
	t.Helper()
	var found []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one %s, rendered %d", kind, len(found))
	}
	return found[0]
}

func kinds(objs []*unstructured.Unstructured) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.GetKind()+"/"+o.GetName())
	}
	return out
}

// examples are the values files users start from; each must lint, render and install.
func examples(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, "examples", "values-*.yaml"))
	if err != nil || len(files) < 4 {
		t.Fatalf("want at least 4 examples/values-*.yaml, found %v (%v)", files, err)
	}
	return files
}
