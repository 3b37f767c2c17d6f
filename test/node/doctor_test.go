package node

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/flowauth/flowauth/internal/image"
	"github.com/flowauth/flowauth/test/localcluster"
)

// kubectlPlugin runs `kubectl flowauth ARGS` the way a user does: kubectl finds the plugin
// binary on PATH. It returns stdout, stderr and the exit code.
func kubectlPlugin(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	// This process's own folder: a binary left by an earlier run (killed before its cleanup) would
	// be an older plugin.
	pluginDir := filepath.Join(os.TempDir(), fmt.Sprintf("flowauth-plugin-test-%d", os.Getpid()))
	if _, err := os.Stat(filepath.Join(pluginDir, "kubectl-flowauth")); err != nil {
		if err := image.GoBuild(context.Background(), root, filepath.Join(pluginDir, "kubectl-flowauth"), "./cmd/kubectl-flowauth", runtime.GOARCH, "-s -w"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.RemoveAll(pluginDir) })
	}
	// kubectl takes no flag before a plugin's name: the kubeconfig comes from the environment.
	cmd := exec.CommandContext(context.Background(), filepath.Join(root, "bin", "k8s", "kubectl"), append([]string{"flowauth"}, args...)...)
	cmd.Env = append(os.Environ(), "PATH="+pluginDir+":"+os.Getenv("PATH"), "KUBECONFIG="+cluster.Kubeconfig)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return out.String(), errOut.String(), exit.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return out.String(), errOut.String(), 0
}

func requireLines(t *testing.T, out string, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if !strings.Contains(out, l) {
			t.Errorf("doctor's output lacks %q:\n%s", l, out)
		}
	}
}

// TestDoctor: `kubectl flowauth doctor` against the cluster, healthy and then broken in each way
// it must name, with the fix; and doctor pod/NAME on a flow run that lacks its Secret.
func TestDoctor(t *testing.T) {
	needNode(t)
	fns := localcluster.FlowauthNamespace

	healthy := newNamespace(t, "healthy")
	createSecrets(t, healthy, newCredentials(t))
	job := exampleJob(t, "prefect1-flow-run-job.yaml", "AWS_CREDENTIALS", "GCP_CREDENTIALS")
	apply(t, healthy, job)
	t.Run("healthy", func(t *testing.T) {
		out, errOut, code := kubectlPlugin(t, "doctor", "-n", healthy)
		if code != 0 {
			t.Errorf("exit code %d on a healthy cluster:\n%s%s", code, out, errOut)
		}
		requireLines(t, out,
			"ok    MutatingWebhookConfiguration flowauth: failurePolicy Fail, matchCondition flow-run-pods-only",
			"ok    Deployment flowauth-system/flowauth: 2 of 2 replicas ready",
			"ok    caBundle verifies the certificate in Secret flowauth-system/flowauth-certs for flowauth.flowauth-system.svc",
			"ok    caBundle verifies the certificate pod flowauth-",
			"ok    namespace "+healthy+" is opted in",
			"ok    Job "+job.Name+": injects AWS_CREDENTIALS,GCP_CREDENTIALS")
		t.Logf("kubectl flowauth doctor -n %s:\n%s", healthy, out)
	})

	t.Run("a Secret missing and the pod that lacks it", func(t *testing.T) {
		ns := newNamespace(t, "lacking")
		lacking := exampleJob(t, "prefect2-flow-run-job.yaml", "GITHUB_ACCESS_TOKEN")
		apply(t, ns, lacking)
		out, _, code := kubectlPlugin(t, "doctor", "-n", ns)
		if code != 1 {
			t.Errorf("exit code %d with a missing Secret, want 1", code)
		}
		requireLines(t, out,
			fmt.Sprintf(`FAIL  Job %s: namespace %q: Secret "github-access-token" not found; GITHUB_ACCESS_TOKEN needs it (keys token)`, lacking.Name, ns),
			"      fix: kubectl create secret generic github-access-token -n "+ns+" --from-literal=token=<value>")

		// render --cluster: the namespace's Secrets as they are, with the webhook's settings.
		manifest := filepath.Join(t.TempDir(), "job.yaml")
		b, _ := yaml.Marshal(lacking)
		if err := os.WriteFile(manifest, b, 0o600); err != nil {
			t.Fatal(err)
		}
		_, errOut, code := kubectlPlugin(t, "render", "--cluster", "-n", ns, "-f", manifest)
		if code != 0 {
			t.Errorf("render --cluster: exit code %d, want 0 (a warning is no denial)", code)
		}
		requireLines(t, errOut, "note: the webhook does not look up Secret keys (--secret-lookup=none)",
			fmt.Sprintf(`Warning: flowauth: namespace %q: Secret "github-access-token" not found; GITHUB_ACCESS_TOKEN needs it (keys token)`, ns))

		pod, err := cluster.WaitForJobPod(context.Background(), ns, lacking.Name)
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(time.Minute)
		for {
			out, _, code = kubectlPlugin(t, "doctor", "-n", ns, "pod/"+pod.Name)
			if strings.Contains(out, "CreateContainerConfigError") || time.Now().After(deadline) {
				break
			}
			time.Sleep(time.Second)
		}
		if code != 1 {
			t.Errorf("doctor pod/%s: exit code %d, want 1", pod.Name, code)
		}
		requireLines(t, out,
			"ok    pod "+pod.Name+" was admitted by flowauth: flowauth.io/status injected=GITHUB_ACCESS_TOKEN,AWS_CREDENTIALS; layers=native",
			"FAIL  container prefect-job: env GITHUB_ACCESS_TOKEN needs Secret github-access-token, which does not exist",
			"      fix: kubectl create secret generic github-access-token -n "+ns+" --from-literal=token=<value>",
			`FAIL  container prefect-job cannot start: CreateContainerConfigError: secret "github-access-token" not found`)
		t.Logf("kubectl flowauth doctor -n %s pod/%s:\n%s", ns, pod.Name, out)
	})

	t.Run("namespace not opted in", func(t *testing.T) {
		ns := fmt.Sprintf("unlabelled-%d", time.Now().UnixNano()%1_000_000)
		kubectl(t, "create", "namespace", ns)
		out, _, code := kubectlPlugin(t, "doctor", "-n", ns)
		if code != 1 {
			t.Errorf("exit code %d, want 1", code)
		}
		requireLines(t, out, "FAIL  namespace "+ns+" is not opted in", "      fix: kubectl label namespace "+ns+" flowauth.io/injection=enabled")
	})

	t.Run("webhook down and then its caBundle wrong", func(t *testing.T) {
		kubectl(t, "-n", fns, "scale", "deployment/flowauth", "--replicas=0")
		kubectl(t, "-n", fns, "wait", "--for=delete", "pod", "-l", "app.kubernetes.io/name=flowauth", "--timeout=2m")
		t.Cleanup(func() {
			// Back to healthy for the tests that follow: two replicas, and the CA they re-inject.
			kubectl(t, "-n", fns, "scale", "deployment/flowauth", "--replicas=2")
			kubectl(t, "-n", fns, "rollout", "status", "deployment/flowauth", "--timeout=3m")
			deadline := time.Now().Add(time.Minute)
			for {
				if _, _, code := kubectlPlugin(t, "doctor", "-n", healthy); code == 0 {
					return
				}
				if time.Now().After(deadline) {
					out, _, _ := kubectlPlugin(t, "doctor", "-n", healthy)
					t.Fatalf("the cluster did not become healthy again:\n%s", out)
				}
				time.Sleep(time.Second)
			}
		})
		out, _, code := kubectlPlugin(t, "doctor", "-n", healthy)
		if code != 1 {
			t.Errorf("exit code %d with no replica, want 1", code)
		}
		requireLines(t, out, "FAIL  Deployment flowauth-system/flowauth: 0 of 0 replicas ready",
			"      fix: kubectl -n flowauth-system describe deployment/flowauth",
			"warn  could not see the certificate a replica serves: no ready replica")

		other := otherCA(t)
		kubectl(t, "patch", "mutatingwebhookconfiguration", "flowauth", "--type=json", "-p",
			`[{"op":"replace","path":"/webhooks/0/clientConfig/caBundle","value":"`+other+`"}]`)
		out, _, code = kubectlPlugin(t, "doctor", "-n", healthy)
		if code != 1 {
			t.Errorf("exit code %d with a wrong caBundle, want 1", code)
		}
		requireLines(t, out, "FAIL  caBundle does not verify the certificate in Secret flowauth-system/flowauth-certs for flowauth.flowauth-system.svc")
		t.Logf("kubectl flowauth doctor -n %s, no replica and a wrong caBundle:\n%s", healthy, out)
	})
}

// otherCA is a CA certificate (base64 of its PEM, as a caBundle) that signed nothing of flowauth's.
func otherCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "not-flowauth"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}
