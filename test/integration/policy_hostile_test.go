package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// hostilePods are what a tenant who can create pods (or fill a Prefect job's variables) in one
// namespace sends to make flowauth work, at the bounds of pkg/mutate and past them, at sizes the
// API server accepts (a pod's annotations hold at most 256 KiB).
func hostilePods() map[string]*corev1.Pod {
	containers := func(n int) []corev1.Container {
		out := make([]corev1.Container, n)
		for i := range out {
			out[i] = corev1.Container{Name: fmt.Sprintf("c%d", i), Image: "i"}
		}
		return out
	}
	names := func(format string, n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf(format, i)
		}
		return out
	}
	pod := func(annotations map[string]string, cs []corev1.Container) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: "hostile-", Annotations: annotations},
			Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: cs}}
	}
	out := map[string]*corev1.Pod{}
	missing := strings.Join(names("ghost-%d", 2000), ",")
	out["missing-containers-2000"] = pod(map[string]string{"flowauth.io/secrets": "AWS_CREDENTIALS", "flowauth.io/containers": missing}, containers(200))
	out["missing-containers-2000-one-present"] = pod(map[string]string{"flowauth.io/secrets": "AWS_CREDENTIALS", "flowauth.io/containers": "c0," + missing}, containers(200))
	out["skip-containers-2000"] = pod(map[string]string{"flowauth.io/secrets": "AWS_CREDENTIALS", "flowauth.io/skip-containers": missing}, containers(200))
	out["names-past-the-bound"] = pod(map[string]string{"flowauth.io/secrets": strings.Join(names("CUSTOM_%d", 5000), ",")}, containers(1))
	out["invalid-names-5000"] = pod(map[string]string{"flowauth.io/secrets": strings.Join(names("bad-%d", 5000), ",")}, containers(1))
	overrides := map[string]string{"flowauth.io/secrets": "AWS_CREDENTIALS"}
	for i := range 3000 {
		overrides[fmt.Sprintf("secret.flowauth.io/UNDECLARED_%d", i)] = fmt.Sprintf("secret-%d", i)
	}
	out["overrides-3000"] = pod(overrides, containers(1))
	// 64 declared names, each from a Secret of a long name, into every one of 64 named containers.
	many := map[string]string{"flowauth.io/containers": strings.Join(names("c%d", 64), ",")}
	decl := names("CUSTOM_NAME_%d", 64)
	many["flowauth.io/secrets"] = strings.Join(decl, ",")
	for _, n := range decl {
		many["secret.flowauth.io/"+n] = strings.Repeat("s", 240) + fmt.Sprintf("-%d", len(n))
	}
	out["injection-64x64"] = pod(many, containers(64))
	// Everything at its bound at once, and allowed: 64 declared names into a container with 1,024
	// env vars, 256 envFrom sources and 256 mounts, in a pod of 256 volumes and 64 containers.
	full := corev1.Container{Name: "flow", Image: "i"}
	for i := range 1024 {
		full.Env = append(full.Env, corev1.EnvVar{Name: fmt.Sprintf("VAR_%d", i), Value: "x"})
	}
	var volumes []corev1.Volume
	for i := range 256 {
		full.EnvFrom = append(full.EnvFrom, corev1.EnvFromSource{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: fmt.Sprintf("s-%d", i)}}})
		full.VolumeMounts = append(full.VolumeMounts, corev1.VolumeMount{Name: fmt.Sprintf("v-%d", i), MountPath: fmt.Sprintf("/m/%d", i)})
		volumes = append(volumes, corev1.Volume{Name: fmt.Sprintf("v-%d", i), VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	}
	every := pod(map[string]string{"flowauth.io/secrets": strings.Join(names("CUSTOM_NAME_%d", 64), ",")}, append([]corev1.Container{full}, containers(63)...))
	every.Spec.Volumes = volumes
	out["every-list-at-its-bound"] = every
	// The built-in names with the most to inject, each in every container named.
	builtins := map[string]string{"flowauth.io/secrets": "AWS_CREDENTIALS, GCP_CREDENTIALS, AZURE_CREDENTIALS, GITHUB_ACCESS_TOKEN, SLACK_WEBHOOK_URL, SNOWFLAKE_CREDENTIALS",
		"flowauth.io/containers": strings.Join(names("c%d", 64), ",")}
	out["builtins-into-64-containers"] = pod(builtins, containers(64))
	return out
}

// examplePods are the pod templates of the examples' flow-run Jobs.
func examplePods(t *testing.T) map[string]*corev1.Pod {
	t.Helper()
	out := map[string]*corev1.Pod{}
	files, err := filepath.Glob("../../examples/*-flow-run-job.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example flow-run Jobs: %v", err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var job batchv1.Job
		if err := yaml.Unmarshal(b, &job); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out["example "+filepath.Base(f)] = &corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: job.Name + "-",
			Annotations: job.Spec.Template.Annotations, Labels: job.Spec.Template.Labels}, Spec: job.Spec.Template.Spec}
	}
	return out
}

// TestHostilePodsGetTheWebhooksAnswerFromThePolicies (issue 31): each hostile pod, and each
// example's flow-run pod, is created
// through the API server twice, in a namespace the webhook serves and in one only the policies
// serve. Both refuse it with the same message, or both store it with the same injection. The
// policies' CEL runs within the API server's cost budgets for every one of them (a budget
// exceeded would refuse the pod with another message).
func TestHostilePodsGetTheWebhooksAnswerFromThePolicies(t *testing.T) {
	if !servesPolicies(t) {
		t.Log("no MutatingAdmissionPolicy v1 here: TestPoliciesInjectAsTheWebhookDoes checks the refusal")
		return
	}
	applyPolicies(t)
	ctx := context.Background()
	webhookNS, policyNS := newNamespace(t, true, ""), policyNamespace(t, "", nil, false)
	pods := hostilePods()
	for name, p := range examplePods(t) {
		pods[name] = p
	}
	for name, p := range pods {
		t.Run(name, func(t *testing.T) {
			viaWebhook, viaPolicies := p.DeepCopy(), p.DeepCopy()
			viaWebhook.Namespace, viaPolicies.Namespace = webhookNS, policyNS
			errWebhook := k8s.Create(ctx, viaWebhook)
			errPolicies := k8s.Create(ctx, viaPolicies)
			switch {
			case errWebhook != nil && errPolicies != nil:
				want := flowauthMessage(errWebhook.Error())
				if got := flowauthMessage(errPolicies.Error()); got != want || want == "" {
					t.Errorf("both refuse, with other messages:\n  webhook:  %.400s\n  policies: %.300s ... %s", errWebhook, errPolicies, tail(errPolicies.Error()))
				}
			case errWebhook != nil:
				t.Errorf("the webhook refuses (%.300s); the policies store the pod", errWebhook)
			case errPolicies != nil:
				t.Errorf("the policies refuse (%.400s ... %s); the webhook stores the pod", errPolicies, tail(errPolicies.Error()))
			default:
				if diff := cmp.Diff(injected(viaWebhook), injected(viaPolicies)); diff != "" {
					t.Errorf("stored pods differ (-webhook +policies):\n%.3000s", diff)
				}
			}
		})
	}
}

// flowauthMessage is the part of an API server refusal that flowauth wrote.
func flowauthMessage(err string) string {
	_, msg, found := strings.Cut(err, "flowauth: ")
	if !found {
		return ""
	}
	return msg
}

// tail is the end of a long refusal (after a policy's expression, the API server's reason).
func tail(s string) string {
	if len(s) > 300 {
		return s[len(s)-300:]
	}
	return s
}
