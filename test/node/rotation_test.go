package node

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flowauth/flowauth/test/localcluster"
)

// watchCredentials prints, once a second, the digests (never the values) of the injected
// GITHUB_ACCESS_TOKEN env var and of the mounted GCP key file, and exits 0 once the file's
// digest differs from the first it saw (1 after three minutes).
const watchCredentials = `
import hashlib, os, sys, time
def d(b): return "sha256:" + hashlib.sha256(b).hexdigest()[:16]
path = "/var/run/secrets/flowauth/gcp-credentials/credentials.json"
first = None
for _ in range(180):
    f = d(open(path, "rb").read())
    print("env", d(os.environ["GITHUB_ACCESS_TOKEN"].encode()), "file", f, flush=True)
    first = first or f
    if f != first:
        sys.exit(0)
    time.sleep(1)
sys.exit(1)
`

// TestCredentialsThatChange: a Secret updated under a running flow run. The injected env keeps
// the value the container started with; the mounted key file follows the Secret within the
// kubelet's sync period; kubectl flowauth doctor names the run as started with an older
// credential; a new run gets the new value.
func TestCredentialsThatChange(t *testing.T) {
	needNode(t)
	ctx := context.Background()
	ns := newNamespace(t, "rotate")
	old := newCredentials(t)
	createSecrets(t, ns, old)
	job := exampleJob(t, "prefect2-flow-run-job.yaml", "GITHUB_ACCESS_TOKEN", "GCP_CREDENTIALS")
	job.Spec.Template.Annotations["flowauth.io/secrets"] = "GITHUB_ACCESS_TOKEN, GCP_CREDENTIALS"
	c := &job.Spec.Template.Spec.Containers[0]
	c.Command = []string{"python3", "-c", watchCredentials}
	apply(t, ns, job)
	pod, err := cluster.WaitForJobPod(ctx, ns, job.Name)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the flow run running and reading its credentials", func() (bool, string) {
		out, _, _ := cluster.Kubectl(ctx, "-n", ns, "logs", pod.Name)
		return strings.Contains(out, "env "+digest(old.GitHubToken)), out
	})
	out, _, _ := kubectlPlugin(t, "doctor", "-n", ns)
	requireLines(t, out, "running flow-run pods, none started before a change of its Secrets")

	// The owner rotates both credentials, in a later second than the container started: both
	// times are kept to the second, and doctor (rightly) calls a change in the same second no
	// change after the start.
	if err := cluster.Client.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
		t.Fatal(err)
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.State.Running != nil {
			time.Sleep(time.Until(cs.State.Running.StartedAt.Add(1100 * time.Millisecond)))
		}
	}
	fresh := newCredentials(t)
	keyFile := filepath.Join(t.TempDir(), "credentials.json")
	if err := os.WriteFile(keyFile, fresh.GCPKey, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*corev1.Secret{
		{ObjectMeta: metav1.ObjectMeta{Name: "github-access-token", Namespace: ns}, Data: map[string][]byte{"token": []byte(fresh.GitHubToken)}},
		{ObjectMeta: metav1.ObjectMeta{Name: "gcp-credentials", Namespace: ns}, Data: map[string][]byte{"credentials.json": fresh.GCPKey}},
	} {
		if err := cluster.Client.Patch(ctx, s, client.Merge); err != nil {
			t.Fatal(err)
		}
	}
	rotated := time.Now()
	out, _, code := kubectlPlugin(t, "doctor", "-n", ns)
	t.Logf("kubectl flowauth doctor -n %s after the rotation (exit %d):\n%s", ns, code, out)
	requireLines(t, out,
		"warn  pod "+pod.Name+": container prefect-job started with an older GITHUB_ACCESS_TOKEN (Secret github-access-token changed",
		"warn  pod "+pod.Name+": container prefect-job started with an older GCP_CREDENTIALS (Secret gcp-credentials changed",
		"its env keeps the old value; a new run picks up the change",
		"(Secret gcp-credentials changed", "its mounted file follows the Secret within the kubelet's sync period")
	for _, v := range append(old.values(), fresh.values()...) {
		if strings.Contains(out, v) {
			t.Errorf("doctor printed a Secret value")
		}
	}

	logs := waitJob(t, ns, job.Name)["prefect-job"]
	t.Logf("the running flow run, one line a second (%s from the rotation to the file's change):\n%s", time.Since(rotated).Round(time.Second), localcluster.LastLines(logs, 3))
	if !strings.Contains(logs, "file "+digest(string(fresh.GCPKey))) {
		t.Errorf("the mounted key file never showed the new key:\n%s", logs)
	}
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		if !strings.HasPrefix(line, "env "+digest(old.GitHubToken)+" ") {
			t.Errorf("the env var changed under the running container: %q", line)
		}
	}

	next := exampleJob(t, "prefect2-flow-run-job.yaml", "GITHUB_ACCESS_TOKEN")
	next.Name += "-next"
	apply(t, ns, next)
	requireFinding(t, waitJob(t, ns, next.Name)["prefect-job"], "GITHUB_ACCESS_TOKEN", "env GITHUB_ACCESS_TOKEN "+digest(fresh.GitHubToken))
}

func eventually(t *testing.T, what string, ok func() (bool, string)) {
	t.Helper()
	localcluster.Eventually(t, 2*time.Minute, what, ok)
}
