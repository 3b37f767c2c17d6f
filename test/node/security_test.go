package node

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/flowauth/flowauth/test/localcluster"
)

// helmUpgrade upgrades the suite's release with --reuse-values and the settings (--set, or
// --set-json for those starting "json:"), waiting for the rollout, and puts the values it changes
// back when the test ends.
func helmUpgrade(t *testing.T, restore []string, set ...string) {
	t.Helper()
	upgrade := func(set []string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		return cluster.UpgradeFlowauth(ctx, set...)
	}
	if err := upgrade(set); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := upgrade(restore); err != nil {
			t.Errorf("putting the chart back: %v", err)
		}
	})
}

// helmValue reads one of the release's values as set (helm get values), "" if unset.
func helmValue(t *testing.T, path ...string) string {
	t.Helper()
	out, err := cluster.Helm(context.Background(), "get", "values", "flowauth", "--namespace", localcluster.FlowauthNamespace, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("helm get values: %v\n%s", err, out)
	}
	for _, p := range path {
		m, _ := v.(map[string]any)
		v = m[p]
	}
	if v == nil {
		return ""
	}
	b, _ := json.Marshal(v)
	return strings.Trim(string(b), `"`)
}

// TestNamespaceOwnerDecidesWhatIsInjected (issue 22, item 4) goes the way Prefect 3 does: a Job
// shaped like the Kubernetes worker's output, container prefect-job, whose pod template's
// annotations came from the work pool's annotations job variable, filled by a deployment author
// who is no Kubernetes user. The namespace's administrator allows AWS_CREDENTIALS from its
// default Secret only, and, for the billing ServiceAccount, from billing-admin-aws. A job
// variable pointing AWS_CREDENTIALS at billing-admin-aws is refused at apply time naming the
// rule; the same Job without it runs with the default Secret's keys; the billing ServiceAccount's
// run gets billing-admin-aws's.
func TestNamespaceOwnerDecidesWhatIsInjected(t *testing.T) {
	needNode(t)
	ns := newNamespace(t, "allowlist")
	creds, billing := newCredentials(t), newCredentials(t)
	createSecrets(t, ns, creds)
	kubectl(t, "-n", ns, "create", "secret", "generic", "billing-admin-aws",
		"--from-literal=ACCESS_KEY="+billing.AWSAccessKey, "--from-literal=SECRET_ACCESS_KEY="+billing.AWSSecretKey)
	kubectl(t, "-n", ns, "create", "serviceaccount", "billing")
	kubectl(t, "annotate", "namespace", ns, "flowauth.io/allowed-secrets=AWS_CREDENTIALS, GITHUB_ACCESS_TOKEN",
		"allowed-secrets.flowauth.io/billing=AWS_CREDENTIALS=billing-admin-aws")
	// Let the webhook's namespace cache see the annotations (a watch event, milliseconds).
	time.Sleep(2 * time.Second)

	// What the worker makes of the work pool's template with annotations = {secret.flowauth.io/...}.
	workerJob := func(name, serviceAccount string, annotations map[string]string) *batchv1.Job {
		job := exampleJob(t, "prefect2-flow-run-job.yaml", "AWS_CREDENTIALS")
		job.Name = name
		job.Spec.Template.Annotations = map[string]string{"flowauth.io/secrets": "AWS_CREDENTIALS", "flowauth.io/inject": "native"}
		for k, v := range annotations {
			job.Spec.Template.Annotations[k] = v
		}
		job.Spec.Template.Spec.ServiceAccountName = serviceAccount
		return job
	}
	stolen := workerJob("stolen", "", map[string]string{"secret.flowauth.io/AWS_CREDENTIALS": "billing-admin-aws"})
	b, _ := json.Marshal(stolen)
	file := filepath.Join(t.TempDir(), "stolen.json")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, stderr, err := cluster.Kubectl(context.Background(), "-n", ns, "apply", "-f", file)
	if err == nil {
		t.Fatalf("a job variable pulled another Secret of the namespace into the run:\n%s", stderr)
	}
	for _, want := range []string{`does not allow AWS_CREDENTIALS from Secret "billing-admin-aws"`, "flowauth.io/allowed-secrets allows", `AWS_CREDENTIALS from Secret "aws-credentials"`} {
		if !strings.Contains(stderr, want) {
			t.Errorf("the refusal does not say %q:\n%s", want, stderr)
		}
	}

	apply(t, ns, workerJob("allowed", "", nil))
	requireFinding(t, waitJob(t, ns, "allowed")["prefect-job"], "AWS_CREDENTIALS", digest(creds.AWSSecretKey))

	apply(t, ns, workerJob("billing", "billing", map[string]string{"secret.flowauth.io/AWS_CREDENTIALS": "billing-admin-aws"}))
	requireFinding(t, waitJob(t, ns, "billing")["prefect-job"], "AWS_CREDENTIALS", digest(billing.AWSSecretKey))
}

// TestJobUpdatesNeverBlock (issue 22, item 6): in deny mode, with the Job's Secret deleted after
// it ran, `kubectl label job` works and `kubectl delete job --cascade=foreground` completes (the
// garbage collector's update that removes the foregroundDeletion finalizer passes). On the old
// main both were refused, and the Job stayed Terminating.
func TestJobUpdatesNeverBlock(t *testing.T) {
	needNode(t)
	helmUpgrade(t, []string{"secretLookup=" + orDefault(helmValue(t, "secretLookup"), "none"), "missingSecret=" + orDefault(helmValue(t, "missingSecret"), "warn")},
		"secretLookup=keys", "missingSecret=deny")
	ns := newNamespace(t, "jobupdate")
	createSecrets(t, ns, newCredentials(t))
	job := exampleJob(t, "prefect2-flow-run-job.yaml", "GITHUB_ACCESS_TOKEN")
	job.Name = "finished"
	job.Spec.Template.Annotations = map[string]string{"flowauth.io/secrets": "GITHUB_ACCESS_TOKEN"}
	apply(t, ns, job)
	waitJob(t, ns, job.Name)
	kubectl(t, "-n", ns, "delete", "secret", "github-access-token")
	time.Sleep(2 * time.Second) // the key cache's watch
	// The same template, applied again as a new Job, is refused: deny mode is on.
	again := job.DeepCopy()
	again.Name = "refused"
	b, _ := json.Marshal(again)
	file := filepath.Join(t.TempDir(), "again.json")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := cluster.Kubectl(context.Background(), "-n", ns, "apply", "-f", file); err == nil || !strings.Contains(stderr, `Secret "github-access-token" not found`) {
		t.Fatalf("deny mode did not refuse a new Job whose Secret is gone: %v\n%s", err, stderr)
	}

	if _, stderr, err := cluster.Kubectl(context.Background(), "-n", ns, "label", "job", job.Name, "team=data"); err != nil {
		t.Errorf("kubectl label job was refused: %v\n%s", err, stderr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if _, stderr, err := cluster.Kubectl(ctx, "-n", ns, "delete", "job", job.Name, "--cascade=foreground", "--wait=true", "--timeout=60s"); err != nil {
		var stuck batchv1.Job
		_ = cluster.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: job.Name}, &stuck)
		t.Fatalf("kubectl delete --cascade=foreground did not complete: %v\n%s\nfinalizers %v", err, stderr, stuck.Finalizers)
	}
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// TestOnlyTheAPIServerIsServed (issue 22, item 3): the API server is given a client certificate
// for the webhook (an AdmissionConfiguration's kubeConfigFile, as the Kubernetes docs describe
// it) and the chart requires it (webhook.clientAuth). Flow-run pods are still injected; a review
// posted from a pod in the cluster, which was answered before, now fails the TLS handshake.
func TestOnlyTheAPIServerIsServed(t *testing.T) {
	needNode(t)
	ns := newNamespace(t, "clientauth")
	// The node has no cluster DNS: the pod dials the Service's ClusterIP, as kube-proxy routes it.
	var svc corev1.Service
	if err := cluster.Client.Get(context.Background(), types.NamespacedName{Namespace: localcluster.FlowauthNamespace, Name: "flowauth"}, &svc); err != nil {
		t.Fatal(err)
	}
	postFromPod := func(name string) string {
		t.Helper()
		pod := &corev1.Pod{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{Name: "forger", Image: cluster.Images.Probe, Command: []string{"python3", "-c", forgedReview},
					Env: []corev1.EnvVar{{Name: "WEBHOOK", Value: "https://" + svc.Spec.ClusterIP + "/mutate-v1-pod"}}}},
				SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](65532)},
			},
		}
		apply(t, ns, pod)
		deadline := time.Now().Add(2 * time.Minute)
		for {
			var p corev1.Pod
			if err := cluster.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, &p); err == nil && (p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed) {
				return kubectl(t, "-n", ns, "logs", name)
			}
			if time.Now().After(deadline) {
				t.Fatalf("the forger pod did not finish")
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	if out := postFromPod("forger-before"); !strings.Contains(out, "answered") {
		t.Fatalf("before client authentication, a pod's review was not answered (the test could not fail): %s", out)
	}

	ca, err := localcluster.NewCA("apiserver-webhook-client-ca")
	if err != nil {
		t.Fatal(err)
	}
	crt, key, err := ca.Issue("kube-apiserver", nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "webhook-kubeconfig.yaml")
	if err := os.WriteFile(kubeconfig, []byte(webhookKubeconfig(crt, key)), 0o600); err != nil {
		t.Fatal(err)
	}
	admission := filepath.Join(dir, "admission.yaml")
	if err := os.WriteFile(admission, []byte(strings.ReplaceAll(admissionConfig, "KUBECONFIG", kubeconfig)), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := cluster.RestartAPIServer(ctx, "--admission-control-config-file="+admission); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cluster.RestartAPIServer(context.Background()); err != nil {
			t.Errorf("restarting the API server as it was: %v", err)
		}
	})
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, ca.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	kubectl(t, "-n", localcluster.FlowauthNamespace, "create", "configmap", "apiserver-webhook-client-ca", "--from-file=ca.crt="+caFile)
	t.Cleanup(func() {
		_, _, _ = cluster.Kubectl(context.Background(), "-n", localcluster.FlowauthNamespace, "delete", "configmap", "apiserver-webhook-client-ca")
	})
	helmUpgrade(t, []string{"webhook.clientAuth.caConfigMap=", "json:webhook.clientAuth.names=[]"},
		"webhook.clientAuth.caConfigMap=apiserver-webhook-client-ca", "webhook.clientAuth.names={kube-apiserver}")

	creds := newCredentials(t)
	createSecrets(t, ns, creds)
	job := exampleJob(t, "prefect2-flow-run-job.yaml", "GITHUB_ACCESS_TOKEN")
	job.Name = "served"
	apply(t, ns, job)
	requireFinding(t, waitJob(t, ns, job.Name)["prefect-job"], "GITHUB_ACCESS_TOKEN", digest(creds.GitHubToken))

	if out := postFromPod("forger-after"); !strings.Contains(out, "refused") {
		t.Errorf("a review posted from a pod was served: %s", out)
	}
}

// forgedReview posts an AdmissionReview naming kube-system to the webhook's Service, as any pod
// could, and prints whether it was answered or refused.
const forgedReview = `
import json, os, ssl, urllib.request
review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
  "uid": "forged", "kind": {"group": "", "version": "v1", "kind": "Pod"},
  "resource": {"group": "", "version": "v1", "resource": "pods"}, "namespace": "kube-system",
  "operation": "CREATE", "userInfo": {"username": "forger"},
  "object": {"metadata": {"annotations": {"flowauth.io/secrets": "AWS_CREDENTIALS"}},
             "spec": {"containers": [{"name": "c", "image": "i"}]}}}}
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
req = urllib.request.Request(os.environ["WEBHOOK"], data=json.dumps(review).encode(),
                             headers={"Content-Type": "application/json"})
try:
    body = urllib.request.urlopen(req, context=ctx, timeout=10).read()
    print("answered", body[:200])
except Exception as e:
    print("refused", type(e).__name__, e)
`

// admissionConfig gives both webhook admission plugins the kubeconfig (KUBECONFIG) that holds the
// client certificate the API server presents to webhooks.
const admissionConfig = `apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
- name: MutatingAdmissionWebhook
  configuration:
    apiVersion: apiserver.config.k8s.io/v1
    kind: WebhookAdmissionConfiguration
    kubeConfigFile: KUBECONFIG
- name: ValidatingAdmissionWebhook
  configuration:
    apiVersion: apiserver.config.k8s.io/v1
    kind: WebhookAdmissionConfiguration
    kubeConfigFile: KUBECONFIG
`

// webhookKubeconfig names the credentials for flowauth's Service as the API server looks them
// up: by the service's DNS name.
func webhookKubeconfig(crt, key []byte) string {
	enc := base64.StdEncoding.EncodeToString
	return `apiVersion: v1
kind: Config
users:
- name: flowauth.flowauth-system.svc
  user:
    client-certificate-data: ` + enc(crt) + `
    client-key-data: ` + enc(key) + `
`
}
