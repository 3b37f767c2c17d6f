package integration

import (
	"context"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flowauth/flowauth/pkg/mutate"
)

func create(t *testing.T, c client.Client, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	if err := c.Create(context.Background(), pod); err != nil {
		t.Fatalf("creating pod: %v", err)
	}
	var stored corev1.Pod
	if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(pod), &stored); err != nil {
		t.Fatalf("reading the stored pod back: %v", err)
	}
	return &stored
}

func TestDeclaredSecretsAreInjected(t *testing.T) {
	ns := newNamespace(t, true, "")
	pod := create(t, k8s, flowRunPod(ns, map[string]string{mutate.AnnotationSecrets: "AWS_CREDENTIALS, GCP_CREDENTIALS"}))

	env := envByName(pod.Spec.Containers[0])
	for name, want := range map[string]string{
		"PREFECT__CONTEXT__SECRETS__AWS_CREDENTIALS__ACCESS_KEY":        "aws-credentials/ACCESS_KEY",
		"PREFECT__CONTEXT__SECRETS__AWS_CREDENTIALS__SECRET_ACCESS_KEY": "aws-credentials/SECRET_ACCESS_KEY",
		"PREFECT__CONTEXT__SECRETS__AWS_CREDENTIALS__SESSION_TOKEN":     "aws-credentials/SESSION_TOKEN",
		"AWS_ACCESS_KEY_ID":                          "aws-credentials/ACCESS_KEY",
		"AWS_SECRET_ACCESS_KEY":                      "aws-credentials/SECRET_ACCESS_KEY",
		"AWS_SESSION_TOKEN":                          "aws-credentials/SESSION_TOKEN",
		"PREFECT__CONTEXT__SECRETS__GCP_CREDENTIALS": "gcp-credentials/credentials.json",
	} {
		if got := secretRef(env[name]); got != want {
			t.Errorf("env %s = secretKeyRef %q, want %q", name, got, want)
		}
	}
	if got := env["GOOGLE_APPLICATION_CREDENTIALS"].Value; got != "/var/run/secrets/flowauth/gcp-credentials/credentials.json" {
		t.Errorf("GOOGLE_APPLICATION_CREDENTIALS = %q", got)
	}
	mounts := pod.Spec.Containers[0].VolumeMounts
	if len(mounts) != 1 || mounts[0].Name != "flowauth-gcp-credentials" || !mounts[0].ReadOnly || mounts[0].MountPath != "/var/run/secrets/flowauth/gcp-credentials" {
		t.Errorf("mounts = %+v", mounts)
	}
	var vol *corev1.Volume
	for i := range pod.Spec.Volumes {
		if pod.Spec.Volumes[i].Name == "flowauth-gcp-credentials" {
			vol = &pod.Spec.Volumes[i]
		}
	}
	if vol == nil || vol.Secret == nil || vol.Secret.SecretName != "gcp-credentials" {
		t.Fatalf("volume = %+v", vol)
	}
	if got := pod.Annotations[mutate.AnnotationStatus]; got != "injected=AWS_CREDENTIALS,GCP_CREDENTIALS" {
		t.Errorf("status = %q", got)
	}
	for _, e := range pod.Spec.Containers[0].Env {
		if e.Value != "" && e.Name != "GOOGLE_APPLICATION_CREDENTIALS" {
			t.Errorf("env %s carries a literal value; every secret must be a secretKeyRef", e.Name)
		}
	}
}

func TestNamespaceDefaultsApplyToPrefectPods(t *testing.T) {
	ns := newNamespace(t, true, "SLACK_WEBHOOK_URL")
	// No annotation at all: the Prefect label plus the namespace's defaults make it a flow run.
	pod := create(t, k8s, flowRunPod(ns, nil))
	if got := secretRef(envByName(pod.Spec.Containers[0])["PREFECT__CONTEXT__SECRETS__SLACK_WEBHOOK_URL"]); got != "slack-webhook-url/value" {
		t.Errorf("SLACK_WEBHOOK_URL from namespace defaults: got %q", got)
	}
	// Merged with the pod's own declaration.
	pod = create(t, k8s, flowRunPod(ns, map[string]string{mutate.AnnotationSecrets: "GITHUB_ACCESS_TOKEN"}))
	if got := pod.Annotations[mutate.AnnotationStatus]; got != "injected=GITHUB_ACCESS_TOKEN,SLACK_WEBHOOK_URL" {
		t.Errorf("status = %q", got)
	}
}

// TestOtherPodsAreNeverSentToTheWebhook: matchConditions and the namespace selector keep the
// API server from calling flowauth at all for pods that are not its business.
func TestOtherPodsAreNeverSentToTheWebhook(t *testing.T) {
	optedIn := newNamespace(t, true, "AWS_CREDENTIALS")
	notOptedIn := newNamespace(t, false, "")
	before := webhookCalls(t)

	plain := flowRunPod(optedIn, nil)
	plain.Labels = map[string]string{"app": "api"}
	if pod := create(t, k8s, plain); len(pod.Spec.Containers[0].Env) != 0 || pod.Annotations[mutate.AnnotationStatus] != "" {
		t.Errorf("plain pod was changed: %+v", pod.Spec.Containers[0].Env)
	}
	declared := flowRunPod(notOptedIn, map[string]string{mutate.AnnotationSecrets: "AWS_CREDENTIALS"})
	if pod := create(t, k8s, declared); len(pod.Spec.Containers[0].Env) != 0 {
		t.Errorf("pod in a namespace without flowauth.io/injection=enabled was changed")
	}
	if after := webhookCalls(t); after != before {
		t.Errorf("webhook answered %v requests for pods it must never be sent", after-before)
	}
	// And a flow run in the opted-in namespace is sent: the counter is not stuck.
	create(t, k8s, flowRunPod(optedIn, nil))
	if after := webhookCalls(t); after != before+1 {
		t.Errorf("webhook calls went from %v to %v for one flow-run pod", before, after)
	}
}

func TestBadDeclarationIsDeniedWithItsReason(t *testing.T) {
	ns := newNamespace(t, true, "")
	err := k8s.Create(context.Background(), flowRunPod(ns, map[string]string{mutate.AnnotationSecrets: "AWS_CREDENTIALS, aws-creds"}))
	if err == nil {
		t.Fatal("pod with an invalid secret name was admitted")
	}
	for _, want := range []string{`admission webhook "pods.flowauth.io" denied the request`, `annotation flowauth.io/secrets: entry "aws-creds" is not a valid secret name`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestWarningsReachTheClient(t *testing.T) {
	ns := newNamespace(t, true, "")
	c, rec := clientWithWarnings(t)
	pod := create(t, c, flowRunPod(ns, map[string]string{mutate.AnnotationSecrets: "AWS_CREDENTIAL"}))
	want := `flowauth: annotation flowauth.io/secrets: entry "AWS_CREDENTIAL" is not a known default secret name (did you mean "AWS_CREDENTIALS"?)`
	found := false
	for _, w := range rec.all() {
		found = found || strings.HasPrefix(w, want)
	}
	if !found {
		t.Errorf("warnings %q lack %q", rec.all(), want)
	}
	if got := secretRef(envByName(pod.Spec.Containers[0])["PREFECT__CONTEXT__SECRETS__AWS_CREDENTIAL"]); got != "aws-credential/value" {
		t.Errorf("custom name served as %q", got)
	}
}

func TestUserSetEnvWins(t *testing.T) {
	ns := newNamespace(t, true, "")
	p := flowRunPod(ns, map[string]string{mutate.AnnotationSecrets: "GITHUB_ACCESS_TOKEN"})
	p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "GITHUB_ACCESS_TOKEN", Value: "from-the-user"}}
	c, rec := clientWithWarnings(t)
	pod := create(t, c, p)
	env := envByName(pod.Spec.Containers[0])
	if env["GITHUB_ACCESS_TOKEN"].Value != "from-the-user" {
		t.Errorf("user's GITHUB_ACCESS_TOKEN overwritten: %+v", env["GITHUB_ACCESS_TOKEN"])
	}
	if secretRef(env["PREFECT__CONTEXT__SECRETS__GITHUB_ACCESS_TOKEN"]) != "github-access-token/token" {
		t.Errorf("prefect layer missing")
	}
	if got := pod.Annotations[mutate.AnnotationStatus]; got != "injected=GITHUB_ACCESS_TOKEN; kept-user-env=GITHUB_ACCESS_TOKEN" {
		t.Errorf("status = %q", got)
	}
	if len(rec.all()) != 1 || !strings.Contains(rec.all()[0], "env GITHUB_ACCESS_TOKEN is already set by the pod; kept it") {
		t.Errorf("warnings = %q", rec.all())
	}
}

// TestReinvocationLeavesContainersAddedLater: a later webhook adds a container; the API server
// calls flowauth again (reinvocationPolicy: IfNeeded). The added container was not there on
// flowauth's first pass (flowauth.io/original-containers) and gets nothing, unless the pod names
// it in flowauth.io/containers; nothing is added twice.
func TestReinvocationLeavesContainersAddedLater(t *testing.T) {
	for _, tc := range []struct {
		name       string
		containers string
		served     []string
	}{
		{"not named: left alone", "", []string{"prefect-job"}},
		{"named in flowauth.io/containers: served", "prefect-job, late-sidecar", []string{"prefect-job", "late-sidecar"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := newNamespace(t, true, "")
			annotations := map[string]string{mutate.AnnotationSecrets: "GCP_CREDENTIALS"}
			if tc.containers != "" {
				annotations[mutate.AnnotationContainers] = tc.containers
			}
			p := flowRunPod(ns, annotations)
			p.Labels["test.flowauth.io/add-container"] = "true"
			pod := create(t, k8s, p)
			if len(pod.Spec.Containers) != 2 || pod.Spec.Containers[1].Name != "late-sidecar" {
				t.Fatalf("the adder webhook did not run: %d containers", len(pod.Spec.Containers))
			}
			if got := pod.Annotations[mutate.AnnotationOriginalContainers]; got != pod.Spec.Containers[0].Name {
				t.Errorf("%s = %q, want the first pass's one container", mutate.AnnotationOriginalContainers, got)
			}
			for _, c := range pod.Spec.Containers {
				env := envByName(c)
				served := secretRef(env["PREFECT__CONTEXT__SECRETS__GCP_CREDENTIALS"]) == "gcp-credentials/credentials.json" && len(c.VolumeMounts) == 1
				want := slices.Contains(tc.served, c.Name)
				switch {
				case want && !served:
					t.Errorf("container %s not served: env=%d mounts=%+v", c.Name, len(c.Env), c.VolumeMounts)
				case want && len(c.Env) != 2:
					t.Errorf("container %s has %d env vars, want 2 (nothing twice)", c.Name, len(c.Env))
				case !want && (len(c.Env) != 0 || len(c.VolumeMounts) != 0):
					t.Errorf("container %s, added after the first pass, got env %v mounts %v", c.Name, c.Env, c.VolumeMounts)
				}
			}
			if len(pod.Spec.Volumes) != 1 {
				t.Errorf("volumes = %d, want 1", len(pod.Spec.Volumes))
			}
		})
	}
}

func TestDryRunShowsTheInjectionAndStoresNothing(t *testing.T) {
	ns := newNamespace(t, true, "")
	p := flowRunPod(ns, map[string]string{mutate.AnnotationSecrets: "REDIS_PASSWORD"})
	p.GenerateName, p.Name = "", "dry-run-pod"
	if err := k8s.Create(context.Background(), p, client.DryRunAll); err != nil {
		t.Fatal(err)
	}
	if got := secretRef(envByName(p.Spec.Containers[0])["PREFECT__CONTEXT__SECRETS__REDIS_PASSWORD"]); got != "redis-password/value" {
		t.Errorf("dry-run answer lacks the injection: %q", got)
	}
	var stored corev1.Pod
	if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(p), &stored); err == nil {
		t.Error("a dry-run pod was stored")
	}
}

// TestUpdatesAreNotMutated: only CREATE is registered; an update of a flow-run pod's labels
// leaves everything else as it was.
func TestUpdatesAreNotMutated(t *testing.T) {
	ns := newNamespace(t, true, "")
	pod := create(t, k8s, flowRunPod(ns, map[string]string{mutate.AnnotationSecrets: "REDIS_PASSWORD"}))
	before := webhookCalls(t)
	pod.Annotations[mutate.AnnotationSecrets] = "REDIS_PASSWORD, EMAIL_PASSWORD"
	if err := k8s.Update(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	if _, ok := envByName(pod.Spec.Containers[0])["PREFECT__CONTEXT__SECRETS__EMAIL_PASSWORD"]; ok {
		t.Error("an UPDATE was mutated")
	}
	if webhookCalls(t) != before {
		t.Error("the webhook was called for an UPDATE")
	}
}
