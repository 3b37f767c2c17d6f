package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/flowauth/flowauth/pkg/mutate"
	"github.com/flowauth/flowauth/pkg/policy"
	"github.com/flowauth/flowauth/pkg/secretmap"
)

// policyLabel opts a namespace in to the policies only: the suite's webhook serves
// flowauth.io/injection=enabled, so these namespaces see no webhook.
const policyLabel = "flowauth.io/policy-test"

// notYetInPolicyMode are the golden cases whose webhook result the policies do not give yet,
// each with why. The test fails when one of them starts to match: the list only shrinks.
var notYetInPolicyMode = map[string]string{
	// envFrom ConfigMaps' keys are read by the webhook only.
	"allow-list-envfrom-not-looked-up": "key lookup (a policy cannot read a ConfigMap's keys)",
	"restricted-type-refused":          "key lookup (a policy cannot read Secrets)",
	"keys-all-present":                 "key lookup (a policy cannot read Secrets)",
	"keys-envfrom-counts-as-user-set":  "key lookup (a policy cannot read Secrets)",
	"keys-missing-ignored":             "key lookup (a policy cannot read Secrets)",
	"keys-secret-missing":              "key lookup (a policy cannot read Secrets)",
	"keys-secret-missing-denied":       "key lookup (a policy cannot read Secrets)",
}

// TestPoliciesInjectAsTheWebhookDoes (issue 31): every golden case of pkg/mutate is created
// through the API server in a namespace that only the compiled admission policies serve, and the
// stored pod has what the webhook's golden output has: each container's env vars and mounts, in
// order, the volumes, and flowauth's annotations.
func TestPoliciesInjectAsTheWebhookDoes(t *testing.T) {
	ctx := context.Background()
	if !servesPolicies(t) {
		// make test-versions' older minors: policy mode cannot be installed there, which the
		// chart says (test/chart's TestAdmissionModeOnThisServer); the objects are refused.
		p, err := policy.Compile(secretmap.Builtin(), policy.Options{Name: "flowauth-test"})
		if err != nil {
			t.Fatal(err)
		}
		err = k8s.Create(ctx, p.Mutating)
		if !meta.IsNoMatchError(err) {
			t.Fatalf("this API server serves no MutatingAdmissionPolicy v1, yet creating one gave %v", err)
		}
		t.Logf("no MutatingAdmissionPolicy v1 here (Kubernetes 1.36+): %v", err)
		return
	}
	applyPolicies(t)
	dirs, err := filepath.Glob("../../pkg/mutate/testdata/*/in.yaml")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no golden cases: %v", err)
	}
	same, known := 0, 0
	for _, in := range dirs {
		dir := filepath.Dir(in)
		name := filepath.Base(dir)
		t.Run(name, func(t *testing.T) {
			var nsConfig struct {
				Annotations      map[string]string `json:"annotations"`
				RequireAllowList bool              `json:"requireAllowList"`
			}
			if b := readOptional(t, filepath.Join(dir, "namespace.yaml")); b != "" {
				if err := yaml.UnmarshalStrict([]byte(b), &nsConfig); err != nil {
					t.Fatal(err)
				}
			}
			ns := policyNamespace(t, readOptional(t, filepath.Join(dir, "namespace-defaults.txt")), nsConfig.Annotations, nsConfig.RequireAllowList)
			pod := readPodFile(t, in)
			want := readPodFile(t, filepath.Join(dir, "out.yaml"))
			findings := readOptional(t, filepath.Join(dir, "findings.txt"))
			pod.Namespace = ns
			job := jobOf(pod)
			err := k8s.Create(ctx, pod)
			// A Job whose template is the pod: refused with the pod's message, or admitted.
			jobErr := k8s.Create(ctx, job, client.DryRunAll)
			var diff string
			switch {
			case strings.Contains("\n"+findings, "\ndeny "):
				// The golden cases' namespace is "flows"; each case here has its own.
				want := strings.NewReplacer(`namespace "flows"`, `namespace "`+ns+`"`, "annotate namespace flows ", "annotate namespace "+ns+" ").
					Replace("flowauth: " + strings.Join(denials(findings), "; "))
				switch {
				case err == nil:
					diff = "the webhook refuses this pod; the policies let it through"
				case !strings.Contains(err.Error(), want):
					diff = fmt.Sprintf("the policies refuse with\n  %s\nthe webhook with\n  %s", err, want)
				case jobErr == nil || !strings.Contains(jobErr.Error(), want):
					diff = fmt.Sprintf("the policies refuse the pod; its Job with\n  %v\nwant\n  %s", jobErr, want)
				}
			case jobErr != nil:
				diff = "the policies refused the pod's Job: " + jobErr.Error()
			case err != nil:
				diff = "the policies refused the pod: " + err.Error()
			default:
				diff = cmp.Diff(injected(want), injected(pod))
			}
			reason, listed := notYetInPolicyMode[name]
			switch {
			case listed && diff == "":
				t.Errorf("listed as not yet in policy mode (%s), yet the policies give the webhook's result: take it off the list", reason)
			case listed:
				known++
				t.Logf("not yet in policy mode (%s)", reason)
			case diff != "":
				t.Errorf("the policies' pod differs from the webhook's golden pod (-webhook +policies):\n%s", diff)
			default:
				same++
			}
		})
	}
	t.Logf("%d golden cases give the webhook's result through the policies; %d are not yet in policy mode", same, known)
}

// servesPolicies says whether the API server serves MutatingAdmissionPolicy v1 (Kubernetes 1.36+).
func servesPolicies(t *testing.T) bool {
	t.Helper()
	_, err := k8s.RESTMapper().RESTMapping(schema.GroupKind{Group: "admissionregistration.k8s.io", Kind: "MutatingAdmissionPolicy"}, "v1")
	if err != nil && !meta.IsNoMatchError(err) {
		t.Fatal(err)
	}
	return err == nil
}

// jobOf is a Job whose pod template is pod, as a Prefect worker's is.
func jobOf(pod *corev1.Pod) *batchv1.Job {
	spec := *pod.Spec.DeepCopy()
	spec.RestartPolicy = corev1.RestartPolicyNever
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "job-", Namespace: pod.Namespace},
		Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Annotations: pod.Annotations, Labels: pod.Labels},
			Spec:       spec,
		}},
	}
}

// denials are the messages of a golden case's findings.txt refusals, in order.
func denials(findings string) []string {
	var out []string
	for line := range strings.Lines(findings) {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "deny "); ok {
			_, msg, _ := strings.Cut(rest, ": ")
			out = append(out, msg)
		}
	}
	return out
}

// injected is what flowauth writes into a pod: flowauth's annotations, each container's env and
// mounts, and the volumes, without what the API server defaults.
func injected(p *corev1.Pod) map[string]any {
	out := map[string]any{}
	for _, a := range []string{mutate.AnnotationStatus, mutate.AnnotationOriginalContainers} {
		out[a] = p.Annotations[a]
	}
	for kind, list := range map[string][]corev1.Container{"init": p.Spec.InitContainers, "container": p.Spec.Containers} {
		for _, c := range list {
			out[kind+" "+c.Name+" env"] = c.Env
			out[kind+" "+c.Name+" mounts"] = c.VolumeMounts
		}
	}
	var volumes []string
	for _, v := range p.Spec.Volumes {
		desc := v.Name
		if s := v.Secret; s != nil {
			desc += fmt.Sprintf(" secret %s items %v optional %v", s.SecretName, s.Items, s.Optional != nil && *s.Optional)
		}
		volumes = append(volumes, desc)
	}
	out["volumes"] = volumes
	return out
}

// applyPolicies compiles the built-in map's policies twice, bound to policyLabel's namespaces:
// "enabled" as the defaults, "required" with an allow-list required. It applies them and waits
// until the API server runs them (it loads policies a moment after they exist).
func applyPolicies(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	for _, o := range []policy.Options{
		{Name: "flowauth-test", NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{policyLabel: "enabled"}}},
		{Name: "flowauth-test-required", NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{policyLabel: "required"}}, RequireAllowList: true},
	} {
		p, err := policy.Compile(secretmap.Builtin(), o)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range p.Objects() {
			obj := o.(client.Object)
			if err := k8s.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatalf("creating %s: %v", obj.GetName(), err)
			}
		}
	}
	// Ready when each binding is in force: the mutating policy injects, the validating one
	// refuses a bad name, and the one that requires a list refuses a pod where there is none.
	enabled, required := policyNamespace(t, "", nil, false), policyNamespace(t, "", nil, true)
	ready := func() bool {
		probe := flowRunPod(enabled, map[string]string{mutate.AnnotationSecrets: "GITHUB_ACCESS_TOKEN"})
		if err := k8s.Create(ctx, probe, client.DryRunAll); err != nil || probe.Annotations[mutate.AnnotationStatus] == "" {
			return false
		}
		bad := flowRunPod(enabled, map[string]string{mutate.AnnotationSecrets: "not-a-name"})
		if err := k8s.Create(ctx, bad, client.DryRunAll); err == nil || !strings.Contains(err.Error(), "flowauth: ") {
			return false
		}
		if err := k8s.Create(ctx, jobOf(bad), client.DryRunAll); err == nil || !strings.Contains(err.Error(), "flowauth: ") {
			return false
		}
		unlisted := flowRunPod(required, map[string]string{mutate.AnnotationSecrets: "GITHUB_ACCESS_TOKEN"})
		err := k8s.Create(ctx, unlisted, client.DryRunAll)
		return err != nil && strings.Contains(err.Error(), "flowauth: ")
	}
	deadline := time.Now().Add(30 * time.Second)
	for !ready() {
		if time.Now().After(deadline) {
			t.Fatal("the API server did not run the policies within 30 s")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// policyNamespace creates a namespace served by the policies only, with namespace defaults and
// annotations (an allow-list), by the policies that require an allow-list if requireList.
func policyNamespace(t *testing.T, defaults string, annotations map[string]string, requireList bool) string {
	t.Helper()
	label := "enabled"
	if requireList {
		label = "required"
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "policy-", Labels: map[string]string{policyLabel: label}, Annotations: annotations}}
	if defaults != "" {
		if ns.Annotations == nil {
			ns.Annotations = map[string]string{}
		}
		ns.Annotations[mutate.AnnotationSecrets] = defaults
	}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), ns) })
	return ns.Name
}

func readOptional(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func readPodFile(t *testing.T, path string) *corev1.Pod {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var p corev1.Pod
	if err := yaml.Unmarshal(b, &p); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return &p
}
