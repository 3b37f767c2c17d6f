// Package e2e is the user's path end to end: the real webhook binary registered with a real
// kube-apiserver, the real Job controller, and `kubectl apply` of the files in examples/.
package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flowauth/flowauth/test/localcluster"
)

var cluster *localcluster.Cluster

func TestMain(m *testing.M) { os.Exit(runSuite(m)) }

func runSuite(m *testing.M) int {
	root, _ := filepath.Abs("../..")
	work, err := os.MkdirTemp("", "flowauth-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(work) }()
	var log io.Writer
	if os.Getenv("E2E_VERBOSE") != "" {
		log = os.Stderr
	}
	cluster, err = localcluster.Start(context.Background(), localcluster.Options{RepoRoot: root, WorkDir: work, Log: log, WebhookArgs: []string{"--log-level=debug", "--secret-lookup=keys"}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer func() { _ = cluster.Stop() }()
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "webhook output:\n%s\n", cluster.WebhookLog.String())
	}
	return code
}

func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	return cluster.MustKubectl(t, args...)
}

// newNamespace creates a namespace with the examples' Secrets, labelled for injection or not.
func newNamespace(t *testing.T, optedIn bool) string {
	t.Helper()
	name := newEmptyNamespace(t, optedIn)
	kubectl(t, "-n", name, "apply", "-f", "../../examples/secrets.yaml")
	return name
}

// newEmptyNamespace creates a namespace with no Secrets.
func newEmptyNamespace(t *testing.T, optedIn bool) string {
	t.Helper()
	name := fmt.Sprintf("e2e-%d", time.Now().UnixNano()%1_000_000_000)
	kubectl(t, "create", "namespace", name)
	if optedIn {
		kubectl(t, "label", "namespace", name, "flowauth.io/injection=enabled")
	}
	return name
}

// jobPod waits for the Job controller to create the Job's pod and returns it as stored; on a
// timeout it logs the namespace's events, where a refused pod leaves its reason.
func jobPod(t *testing.T, namespace, job string) corev1.Pod {
	t.Helper()
	pod, err := cluster.WaitForJobPod(context.Background(), namespace, job)
	if err != nil {
		var events corev1.EventList
		_ = cluster.Client.List(context.Background(), &events, client.InNamespace(namespace))
		for _, e := range events.Items {
			t.Logf("event %s %s: %s", e.InvolvedObject.Name, e.Reason, e.Message)
		}
		t.Fatal(err)
	}
	return *pod
}

func refs(c corev1.Container) map[string]string {
	out := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			out[e.Name] = "secret:" + e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
		default:
			out[e.Name] = "value:" + e.Value
		}
	}
	return out
}

func TestPrefect1AgentJob(t *testing.T) {
	ns := newNamespace(t, true)
	kubectl(t, "-n", ns, "apply", "-f", "../../examples/prefect1-flow-run-job.yaml")
	pod := jobPod(t, ns, "prefect-job-3c1b2a9f")
	got := refs(pod.Spec.Containers[0])
	want := map[string]string{
		"PREFECT__CLOUD__USE_LOCAL_SECRETS": "value:false",
		"AWS_REGION":                        "value:eu-west-1",
		"PREFECT__CONTEXT__SECRETS__AWS_CREDENTIALS__ACCESS_KEY":        "secret:aws-credentials/ACCESS_KEY",
		"PREFECT__CONTEXT__SECRETS__AWS_CREDENTIALS__SECRET_ACCESS_KEY": "secret:aws-credentials/SECRET_ACCESS_KEY",
		// The example Secret has no SESSION_TOKEN: with key lookup, the optional key is not referenced.
		"AWS_ACCESS_KEY_ID":                          "secret:aws-credentials/ACCESS_KEY",
		"AWS_SECRET_ACCESS_KEY":                      "secret:aws-credentials/SECRET_ACCESS_KEY",
		"PREFECT__CONTEXT__SECRETS__GCP_CREDENTIALS": "secret:gcp-credentials/credentials.json",
		"GOOGLE_APPLICATION_CREDENTIALS":             "value:/var/run/secrets/flowauth/gcp-credentials/credentials.json",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("env of the Job's pod:\n got %v\nwant %v", got, want)
	}
	c := pod.Spec.Containers[0]
	if len(c.VolumeMounts) != 1 || c.VolumeMounts[0].MountPath != "/var/run/secrets/flowauth/gcp-credentials" || !c.VolumeMounts[0].ReadOnly {
		t.Errorf("mounts = %+v", c.VolumeMounts)
	}
	found := false
	for _, v := range pod.Spec.Volumes {
		found = found || (v.Name == "flowauth-gcp-credentials" && v.Secret != nil && v.Secret.SecretName == "gcp-credentials")
	}
	if !found {
		t.Errorf("no flowauth-gcp-credentials secret volume in %+v", pod.Spec.Volumes)
	}
	if pod.Annotations["flowauth.io/status"] != "injected=AWS_CREDENTIALS,GCP_CREDENTIALS" {
		t.Errorf("status = %q", pod.Annotations["flowauth.io/status"])
	}
	// The stored pod, as kubectl shows it, holds references only: no Secret value.
	// Neither does the webhook's log at debug level.
	yaml := kubectl(t, "-n", ns, "get", "pod", pod.Name, "-o", "yaml")
	log := cluster.WebhookLog.String()
	if !strings.Contains(log, "injected flow-run pod") {
		t.Errorf("the webhook's debug log has no admission line to check")
	}
	for _, value := range []string{"AKIAEXAMPLEEXAMPLE00", "example-secret-access-key-not-real", "not-real"} {
		if strings.Contains(yaml, value) {
			t.Errorf("a Secret value (%q) appears in the stored pod", value)
		}
		if strings.Contains(log, value) {
			t.Errorf("a Secret value (%q) appears in the webhook's log", value)
		}
	}
}

func TestPrefect2WorkerJobNativeOnly(t *testing.T) {
	ns := newNamespace(t, true)
	kubectl(t, "-n", ns, "apply", "-f", "../../examples/prefect2-flow-run-job.yaml")
	pod := jobPod(t, ns, "tangerine-lion-x7k2p")
	got := refs(pod.Spec.Containers[0])
	want := map[string]string{
		"PREFECT__FLOW_RUN_ID":  "value:6f1b0b5e-1c1f-4b7a-9a43-0f4c8c1d2e3f",
		"GITHUB_ACCESS_TOKEN":   "secret:github-access-token/token",
		"AWS_ACCESS_KEY_ID":     "secret:aws-credentials/ACCESS_KEY",
		"AWS_SECRET_ACCESS_KEY": "secret:aws-credentials/SECRET_ACCESS_KEY",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("env of the Job's pod:\n got %v\nwant %v", got, want)
	}
	if pod.Annotations["flowauth.io/status"] != "injected=GITHUB_ACCESS_TOKEN,AWS_CREDENTIALS; layers=native" {
		t.Errorf("status = %q", pod.Annotations["flowauth.io/status"])
	}
}

func TestNamespaceWithoutLabelIsLeftAlone(t *testing.T) {
	ns := newNamespace(t, false)
	kubectl(t, "-n", ns, "apply", "-f", "../../examples/prefect1-flow-run-job.yaml")
	pod := jobPod(t, ns, "prefect-job-3c1b2a9f")
	if len(pod.Spec.Containers[0].Env) != 2 || len(pod.Spec.Volumes) != 0 || pod.Annotations["flowauth.io/status"] != "" {
		t.Errorf("pod in an unlabelled namespace was changed: env=%v volumes=%v", refs(pod.Spec.Containers[0]), pod.Spec.Volumes)
	}
}

// TestBadJobIsRefusedAtApplyTime: a Job whose pod template would be denied is itself refused,
// with the pod's message, before any pod exists.
func TestBadJobIsRefusedAtApplyTime(t *testing.T) {
	ns := newNamespace(t, true)
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "bad-declaration", Namespace: ns},
		Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{"flowauth.io/secrets": "aws_credentials"}},
			Spec:       corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "flow", Image: "prefecthq/prefect:1.4.1-python3.10"}}},
		}},
	}
	err := cluster.Client.Create(context.Background(), job)
	want := `admission webhook "jobs.flowauth.io" denied the request: flowauth: annotation flowauth.io/secrets: entry "aws_credentials" is not a valid secret name`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("creating the Job: %v\nwant an error with %q", err, want)
	}
}

func TestMetricsAreServed(t *testing.T) {
	resp, err := http.Get(cluster.MetricsURL) //nolint:noctx // test
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{"flowauth_admission_requests_total", "controller_runtime_webhook_latency_seconds"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
