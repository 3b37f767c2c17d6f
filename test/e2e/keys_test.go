package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flowauth/flowauth/test/localcluster"
)

// leakProbe is a Secret value that must never appear in any output of flowauth or of the cluster
// about flowauth's work: logs, Events, metrics, admission responses, stored objects.
const leakProbe = "flowauth-e2e-leak-probe-7d41c9"

// flowRunJob writes a flow-run Job declaring GITHUB_ACCESS_TOKEN, as a Prefect worker would
// create it, and returns the file.
func flowRunJob(t *testing.T, name string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), name+".yaml")
	job := fmt.Sprintf(`apiVersion: batch/v1
kind: Job
metadata:
  name: %s
spec:
  backoffLimit: 0
  template:
    metadata:
      labels:
        prefect.io/flow-run-id: 0b7a2c1e-4f7d-4f5e-9d4c-2f3b9a8e7c61
      annotations:
        flowauth.io/secrets: GITHUB_ACCESS_TOKEN
    spec:
      restartPolicy: Never
      containers:
      - name: prefect-job
        image: prefecthq/prefect:3-python3.12
`, name)
	if err := os.WriteFile(file, []byte(job), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// answers keeps what kubectl printed of admission answers (warnings, denials) in this suite,
// for TestNoSecretValueLeaks.
var answers localcluster.SyncBuffer

// apply runs `kubectl apply` and returns stderr, where kubectl prints admission warnings.
func apply(t *testing.T, ns, file string) (stderr string, err error) {
	t.Helper()
	_, stderr, err = cluster.Kubectl(context.Background(), "-n", ns, "apply", "-f", file)
	_, _ = answers.Write([]byte(stderr))
	return stderr, err
}

func eventually(t *testing.T, what string, ok func() (bool, string)) {
	t.Helper()
	localcluster.Eventually(t, 30*time.Second, what, ok)
}

// TestMissingSecretIsToldAtApplyTime: with key lookup, `kubectl apply` of a flow-run Job whose
// Secret is missing prints the warning, the Job's pod is still created (it starts once the
// Secret exists) and the Job shows an Event; a Secret created afterwards clears the warning.
func TestMissingSecretIsToldAtApplyTime(t *testing.T) {
	ns := newEmptyNamespace(t, true)
	job := flowRunJob(t, "needs-github")
	stderr, err := apply(t, ns, job)
	if err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, stderr)
	}
	want := fmt.Sprintf(`Warning: flowauth: namespace %q: Secret "github-access-token" not found; GITHUB_ACCESS_TOKEN needs it (keys token). Create it: kubectl create secret generic github-access-token -n %s --from-literal=token=<value>`, ns, ns)
	if !strings.Contains(stderr, want) {
		t.Errorf("kubectl apply printed:\n%s\nwant the line:\n%s", stderr, want)
	}
	t.Logf("kubectl apply printed:\n%s", stderr)

	pod := jobPod(t, ns, "needs-github")
	if got := pod.Annotations["flowauth.io/status"]; got != "injected=GITHUB_ACCESS_TOKEN" {
		t.Errorf("the Job's pod status = %q (warn mode still serves it)", got)
	}
	eventually(t, "the warning as an Event on the Job", func() (bool, string) {
		out := kubectl(t, "-n", ns, "describe", "job", "needs-github")
		return strings.Contains(out, "FlowauthSecretNotFound") && strings.Contains(out, `Secret "github-access-token" not found`), out
	})
	// Both the apply-time check and the Job controller's pod left their Event on the Job.
	eventually(t, "Events from both the Job check and the pod", func() (bool, string) {
		out := kubectl(t, "-n", ns, "get", "events.events.k8s.io", "-o", "jsonpath={range .items[*]}{.action} {.reason} {.regarding.kind}/{.regarding.name}{\"\\n\"}{end}")
		return strings.Contains(out, "ValidateJob FlowauthSecretNotFound Job/needs-github") && strings.Contains(out, "CreatePod FlowauthSecretNotFound Job/needs-github"), out
	})

	kubectl(t, "-n", ns, "create", "secret", "generic", "github-access-token", "--from-literal=token="+leakProbe)
	kubectl(t, "-n", ns, "delete", "job", "needs-github", "--wait")
	eventually(t, "a clean apply once the Secret exists", func() (bool, string) {
		stderr, err := apply(t, ns, job)
		if err != nil {
			return false, stderr
		}
		if strings.Contains(stderr, "Warning:") {
			kubectl(t, "-n", ns, "delete", "job", "needs-github", "--wait")
			return false, stderr
		}
		return true, stderr
	})
}

// denyMissing runs the webhook with --missing-secret=deny (and extra flags) until the test ends.
func denyMissing(t *testing.T, extra ...string) {
	t.Helper()
	if err := cluster.RestartWebhook(context.Background(), append([]string{"--missing-secret=deny"}, extra...)...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cluster.RestartWebhook(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}

// TestDenyModeRejectsTheJob: with --missing-secret=deny the same Job is refused at apply time
// with the same message, and nothing is created.
func TestDenyModeRejectsTheJob(t *testing.T) {
	ctx := context.Background()
	denyMissing(t)
	ns := newEmptyNamespace(t, true)
	stderr, err := apply(t, ns, flowRunJob(t, "denied-github"))
	if err == nil {
		t.Fatalf("kubectl apply succeeded; want a denial. stderr:\n%s", stderr)
	}
	want := fmt.Sprintf(`admission webhook "jobs.flowauth.io" denied the request: flowauth: namespace %q: Secret "github-access-token" not found; GITHUB_ACCESS_TOKEN needs it (keys token). Create it: kubectl create secret generic github-access-token -n %s --from-literal=token=<value>`, ns, ns)
	if !strings.Contains(stderr, want) {
		t.Errorf("kubectl apply printed:\n%s\nwant:\n%s", stderr, want)
	}
	if out, _, _ := cluster.Kubectl(ctx, "-n", ns, "get", "jobs", "-o", "name"); strings.TrimSpace(out) != "" {
		t.Errorf("a denied Job was stored: %s", out)
	}
}

// backToBackPairs is how many Secret-then-pod pairs TestNothingFreshIsCalledMissing creates
// (FLOWAUTH_BACK_TO_BACK changes it; make scale runs the same loop at its own size).
func backToBackPairs() int {
	if n, err := strconv.Atoi(os.Getenv("FLOWAUTH_BACK_TO_BACK")); err == nil && n > 0 {
		return n
	}
	return 300
}

// TestNothingFreshIsCalledMissing: with --missing-secret=deny, a Secret created right before
// its flow-run pod, a Secret and its Job in one `kubectl apply`, and a namespace whose defaults
// were set right before its first flow run are never reported missing: what the key cache has
// not seen yet is read from the API server first.
func TestNothingFreshIsCalledMissing(t *testing.T) {
	ctx := context.Background()
	denyMissing(t)
	confirmedBefore := foundLive(t)

	ns := newEmptyNamespace(t, true)
	n := backToBackPairs()
	started := time.Now()
	falseMissing, first, err := localcluster.BackToBack(ctx, cluster.Config, ns, n)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d Secret+pod pairs created back to back: %d called missing (%s)", n, falseMissing, time.Since(started))
	if falseMissing > 0 {
		t.Errorf("%d of %d pods were refused or warned about a Secret created just before them; the first:\n%s", falseMissing, n, first)
	}
	confirmed := foundLive(t) - confirmedBefore
	t.Logf("of them, %v found by a live read (the watch had not delivered the Secret yet)", confirmed)

	// A Secret and its Job in one file, as a user applies them.
	for i := range 10 {
		file := filepath.Join(t.TempDir(), "job.yaml")
		job, err := os.ReadFile(flowRunJob(t, fmt.Sprintf("with-secret-%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		secret := "apiVersion: v1\nkind: Secret\nmetadata:\n  name: github-access-token-" + strconv.Itoa(i) + "\nstringData:\n  token: " + leakProbe + "\n---\n"
		job = []byte(strings.Replace(string(job), "        flowauth.io/secrets: GITHUB_ACCESS_TOKEN",
			"        flowauth.io/secrets: GITHUB_ACCESS_TOKEN\n        secret.flowauth.io/GITHUB_ACCESS_TOKEN: github-access-token-"+strconv.Itoa(i), 1))
		if err := os.WriteFile(file, append([]byte(secret), job...), 0o600); err != nil { //nolint:gosec // a file of the test's own temporary folder
			t.Fatal(err)
		}
		if stderr, err := apply(t, ns, file); err != nil || strings.Contains(stderr, "Warning:") {
			t.Fatalf("kubectl apply of a Secret with its Job: %v\n%s", err, stderr)
		}
	}
	pod := jobPod(t, ns, "with-secret-9")
	if got := pod.Annotations["flowauth.io/status"]; got != "injected=GITHUB_ACCESS_TOKEN" {
		t.Errorf("the last Job's pod status = %q", got)
	}

	// A namespace opted in with defaults, its Secret, and at once a Prefect pod that declares nothing.
	for i := range 10 {
		name := fmt.Sprintf("fresh-defaults-%d-%d", time.Now().UnixNano()%1_000_000, i)
		nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name,
			Labels: map[string]string{"flowauth.io/injection": "enabled"}, Annotations: map[string]string{"flowauth.io/secrets": "GITHUB_ACCESS_TOKEN"}}}
		if err := cluster.Client.Create(ctx, nsObj); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cluster.Client.Delete(context.Background(), nsObj) })
		if err := cluster.Client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "github-access-token", Namespace: name},
			StringData: map[string]string{"token": leakProbe}}); err != nil {
			t.Fatal(err)
		}
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "run", Namespace: name, Labels: map[string]string{"prefect.io/flow-run-id": "x"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "flow", Image: "prefect"}}}}
		if err := cluster.Client.Create(ctx, pod); err != nil {
			t.Fatalf("a flow run in a namespace just given defaults: %v", err)
		}
		if got := pod.Annotations["flowauth.io/status"]; got != "injected=GITHUB_ACCESS_TOKEN" {
			t.Errorf("a flow run in a namespace just given defaults: status %q", got)
		}
	}
}

// TestSecretOutsideTheSelectorsIsFoundLive: with a label selector that no Secret of the test
// carries, the key cache never holds them, so every flow-run pod's Secret is found by the live
// read, exactly once per pod, and none is called missing (with --missing-secret=deny, each would
// be refused without the read). Where the back-to-back race above depends on timing, this does not.
func TestSecretOutsideTheSelectorsIsFoundLive(t *testing.T) {
	denyMissing(t, "--secret-label-selector=flowauth.io/credentials=true")
	before := foundLive(t)
	const n = 20
	falseMissing, first, err := localcluster.BackToBack(context.Background(), cluster.Config, newEmptyNamespace(t, true), n)
	if err != nil {
		t.Fatal(err)
	}
	if falseMissing > 0 {
		t.Errorf("%d of %d pods were refused or warned about a Secret outside the watch's selector; the first:\n%s", falseMissing, n, first)
	}
	if got := foundLive(t) - before; got != n {
		t.Errorf("Secrets found by a live read grew by %v for %d pods whose Secrets the cache cannot hold, want %d", got, n, n)
	}
}

// foundLive is how many Secrets the webhook has found by a live read since it started
// (flowauth_key_cache_confirmations_total{kind="Secret",result="found"}).
func foundLive(t *testing.T) float64 {
	t.Helper()
	samples, err := localcluster.MetricSamples(context.Background(), cluster.MetricsURL)
	if err != nil {
		t.Fatal(err)
	}
	return samples[`flowauth_key_cache_confirmations_total{kind="Secret",result="found"}`]
}

// TestNoSecretValueLeaks scans every output flowauth and the cluster produced in this suite
// for the Secret values the tests stored: the examples' and the leak probe.
func TestNoSecretValueLeaks(t *testing.T) {
	// Run after the other tests of this package (go test runs files in order, this one's last
	// tests last): make sure there is something to scan.
	ns := newNamespace(t, true)
	kubectl(t, "-n", ns, "create", "secret", "generic", "probe", "--from-literal=value="+leakProbe)
	kubectl(t, "-n", ns, "apply", "-f", "../../examples/prefect1-flow-run-job.yaml")
	jobPod(t, ns, "prefect-job-3c1b2a9f")

	// The error path too: a request the webhook must refuse, answered as the API server would see it.
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(cluster.WebhookCA())
	direct := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	for _, body := range []string{
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"leak","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","namespace":"` + ns + `","object":{"metadata":{"annotations":{"flowauth.io/secrets":"AWS_CREDENTIALS bad-name"}},"spec":[]}}}`,
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"leak","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","namespace":"` + ns + `","object":{"metadata":{"annotations":{"flowauth.io/secrets":"AWS_CREDENTIALS bad-name"}},"spec":{"containers":[{"name":"c"}]}}}}`,
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"leak","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","namespace":"` + ns + `","object":{"metadata":{"annotations":{"flowauth.io/secrets":"AWS_CREDENTIALS GCP_CREDENTIALS GITHUB_ACCESS_TOKEN"}},"spec":{"containers":[{"name":"c"}]}}}}`,
	} {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, cluster.WebhookURL(), strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := direct.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		answer, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		_, _ = answers.Write(answer)
	}

	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, cluster.MetricsURL, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if !strings.Contains(answers.String(), "Warning: flowauth:") || !strings.Contains(answers.String(), `"code":400`) || !strings.Contains(answers.String(), `"code":403`) {
		t.Errorf("the scan lacks a warning, an error or a denial to look at:\n%s", answers.String())
	}
	outputs := map[string]string{
		"admission answers": answers.String(),
		"webhook log":       cluster.WebhookLog.String(),
		"metrics":           string(metrics),
		"events":            kubectl(t, "get", "events", "-A", "-o", "yaml"),
		"pods":              kubectl(t, "get", "pods", "-A", "-o", "yaml"),
		"jobs":              kubectl(t, "get", "jobs", "-A", "-o", "yaml"),
		"describe jobs":     kubectl(t, "describe", "jobs", "-A"),
		"webhook metadata":  kubectl(t, "get", "mutatingwebhookconfigurations,validatingwebhookconfigurations", "-o", "yaml"),
	}
	for what, out := range outputs {
		for _, value := range []string{leakProbe, "AKIAEXAMPLEEXAMPLE00", "example-secret-access-key-not-real", "ghp_exampleNotARealToken", "private_key_id"} {
			if strings.Contains(out, value) {
				t.Errorf("the Secret value %q appears in the %s", value, what)
			}
		}
	}
	if !strings.Contains(string(metrics), "flowauth_key_cache_synced 1") {
		t.Error("metrics lack flowauth_key_cache_synced 1")
	}
}
