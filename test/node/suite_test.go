// Package node runs flowauth for real: a one-node cluster (kubelet, containerd, runc, kube-proxy,
// kube-scheduler beside the local control plane), flowauth installed by its Helm chart from an
// image in a registry on 127.0.0.1 and serving from inside the cluster, and flow-run Jobs whose
// containers start and whose client libraries (boto3, google-auth) read what flowauth injected.
//
// It needs root. Without root every test is skipped with the reason; under CI=true missing root
// fails the suite instead, so a CI machine can never pass it by not running it.
package node

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/flowauth/flowauth/test/localcluster"
)

var (
	cluster *localcluster.Cluster
	root    string
	// skipReason is why the node cannot run here (set only outside CI).
	skipReason string
	// installTook is how long `helm install --wait` took, from the chart to Ready replicas.
	installTook time.Duration
)

func TestMain(m *testing.M) { os.Exit(runSuite(m)) }

func runSuite(m *testing.M) int {
	root, _ = filepath.Abs("../..")
	start := time.Now()
	var done func()
	var err error
	cluster, skipReason, done, err = localcluster.StartForSuite("node", localcluster.Options{RepoRoot: root, Log: os.Stderr, WebhookPlatforms: localcluster.WebhookPlatforms})
	if err != nil {
		fmt.Fprintln(os.Stderr, "node: FAIL:", err)
		return 1
	}
	if skipReason != "" {
		return m.Run()
	}
	code := func() int {
		defer done()
		fmt.Fprintf(os.Stderr, "node: cluster up in %s\n", time.Since(start).Round(time.Millisecond))
		start = time.Now()
		if err := cluster.InstallFlowauth(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, "node:", err)
			dumpOnFailure()
			return 1
		}
		installTook = time.Since(start)
		fmt.Fprintf(os.Stderr, "node: helm install --wait took %s\n", installTook.Round(time.Millisecond))
		code := m.Run()
		if code != 0 {
			dumpOnFailure()
		}
		stopPrefect()
		return code
	}()
	if code == 0 && leftovers() != "" {
		fmt.Fprintln(os.Stderr, "node: teardown left this on the machine:", leftovers())
		return 1
	}
	return code
}

// needNode skips (outside CI) when the node cannot run here.
func needNode(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
}

// dumpOnFailure prints what helps to tell why: the pods and the tail of the node's logs.
func dumpOnFailure() {
	out, _, _ := cluster.Kubectl(context.Background(), "get", "pods", "-A", "-o", "wide")
	fmt.Fprintf(os.Stderr, "pods:\n%s\n", out)
	out, _, _ = cluster.Kubectl(context.Background(), "get", "events", "-A", "--sort-by=.lastTimestamp")
	fmt.Fprintf(os.Stderr, "events:\n%s\n", localcluster.LastLines(out, 40))
	logs, _ := cluster.NodeLogs()
	for _, p := range logs {
		b, _ := os.ReadFile(p)
		fmt.Fprintf(os.Stderr, "--- %s\n%s\n", p, localcluster.LastLines(string(b), 25))
	}
}

func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	return cluster.MustKubectl(t, args...)
}

// newNamespace creates a namespace opted in to injection and waits for its default
// ServiceAccount (the ServiceAccount admission plugin refuses pods until it exists).
func newNamespace(t *testing.T, prefix string) string {
	t.Helper()
	name := fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano()%1_000_000)
	kubectl(t, "create", "namespace", name)
	kubectl(t, "label", "namespace", name, "flowauth.io/injection=enabled")
	deadline := time.Now().Add(30 * time.Second)
	for {
		var sa corev1.ServiceAccount
		err := cluster.Client.Get(context.Background(), types.NamespacedName{Namespace: name, Name: "default"}, &sa)
		if err == nil {
			return name
		}
		if time.Now().After(deadline) {
			t.Fatalf("namespace %s has no default ServiceAccount: %v", name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// credentials are the Secret values a test creates: random for each run, so that a value found
// in a log can only have come from this run's Secrets.
type credentials struct {
	AWSAccessKey, AWSSecretKey, GitHubToken string
	GCPKey                                  []byte // a service-account key file, as GCP issues them
	GCPClientEmail, GCPProject              string
}

func newCredentials(t *testing.T) credentials {
	t.Helper()
	c := credentials{
		AWSAccessKey:   "AKIA" + strings.ToUpper(randomHex(8)),
		AWSSecretKey:   randomHex(20),
		GitHubToken:    "ghp_" + randomHex(18),
		GCPClientEmail: "probe-" + randomHex(4) + "@flowauth-test.iam.gserviceaccount.com",
		GCPProject:     "flowauth-test-" + randomHex(3),
	}
	var err error
	if c.GCPKey, err = localcluster.ServiceAccountKey(c.GCPProject, c.GCPClientEmail); err != nil {
		t.Fatal(err)
	}
	allCredentials = append(allCredentials, c)
	return c
}

// allCredentials are every value a test stored in a Secret: the leak scan looks for each.
var allCredentials []credentials

func (c credentials) values() []string {
	return []string{c.AWSAccessKey, c.AWSSecretKey, c.GitHubToken, string(c.GCPKey), c.GCPClientEmail,
		// the private key's body, one PEM line of it
		strings.Split(string(c.GCPKey), `\n`)[1]}
}

// createSecrets stores c in ns under flowauth's default Secret names.
func createSecrets(t *testing.T, ns string, c credentials) {
	t.Helper()
	kubectl(t, "-n", ns, "create", "secret", "generic", "aws-credentials",
		"--from-literal=ACCESS_KEY="+c.AWSAccessKey, "--from-literal=SECRET_ACCESS_KEY="+c.AWSSecretKey)
	keyFile := filepath.Join(t.TempDir(), "credentials.json")
	if err := os.WriteFile(keyFile, c.GCPKey, 0o600); err != nil {
		t.Fatal(err)
	}
	kubectl(t, "-n", ns, "create", "secret", "generic", "gcp-credentials", "--from-file=credentials.json="+keyFile)
	kubectl(t, "-n", ns, "create", "secret", "generic", "github-access-token", "--from-literal=token="+c.GitHubToken)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// digest is how the probe shows a value: the first 16 hex digits of its SHA-256.
func digest(value string) string {
	sum := sha256.Sum256([]byte(value))
	return "sha256:" + hex.EncodeToString(sum[:])[:16]
}

// exampleJob reads a Job from examples/ and makes it run the probe for names instead of Prefect.
func exampleJob(t *testing.T, file string, names ...string) *batchv1.Job {
	t.Helper()
	job, err := localcluster.ProbeJob(root, file, cluster.Images.Probe, names...)
	if err != nil {
		t.Fatal(err)
	}
	return job
}

// apply runs `kubectl apply -f` on obj in ns, as a user would, and returns what kubectl printed
// on stderr (its warnings).
func apply(t *testing.T, ns string, obj any) string {
	t.Helper()
	b, err := yaml.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "manifest.yaml")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, stderr, err := cluster.Kubectl(context.Background(), "-n", ns, "apply", "-f", file)
	if err != nil {
		t.Fatalf("kubectl apply: %v\n%s\n%s", err, stderr, b)
	}
	return stderr
}

// waitJob waits until the Job completes and returns the logs of its pod's containers.
func waitJob(t *testing.T, ns, name string) map[string]string {
	t.Helper()
	pod, err := cluster.WaitForJobComplete(context.Background(), ns, name, 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	logs := map[string]string{}
	for _, c := range pod.Spec.Containers {
		logs[c.Name] = kubectl(t, "-n", ns, "logs", pod.Name, "-c", c.Name)
	}
	return logs
}

// requireFinding fails unless the probe's log has an "ok" line for name containing want.
func requireFinding(t *testing.T, log, name, want string) {
	t.Helper()
	for _, line := range strings.Split(log, "\n") {
		f := strings.Fields(line)
		if len(f) > 2 && f[0] == "ok" && f[1] == name && strings.Contains(line, want) {
			return
		}
	}
	t.Errorf("the probe found no %q for %s; its output:\n%s", want, name, log)
}

// leftovers is what a torn-down node must not leave: its bridge, its record, kubepods cgroups,
// KUBE- iptables chains (empty when all is clean).
func leftovers() string {
	var found []string
	if _, err := os.Stat("/sys/class/net/flowauth0"); err == nil {
		found = append(found, "bridge flowauth0")
	}
	if _, err := os.Stat("/run/flowauth-localcluster.json"); err == nil {
		found = append(found, "record /run/flowauth-localcluster.json")
	}
	for _, h := range []string{"memory", "cpu", "pids", "systemd", "unified"} {
		if _, err := os.Stat("/sys/fs/cgroup/" + h + "/kubepods"); err == nil {
			found = append(found, "cgroup "+h+"/kubepods")
		}
	}
	return strings.Join(found, ", ")
}
