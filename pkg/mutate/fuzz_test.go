package mutate

import (
	"strings"
	"testing"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flowauth/flowauth/pkg/secretmap"
)

// FuzzAnnotations drives Pod with arbitrary annotation values (and namespace defaults) on a pod
// with a user env var, a user mount and an envFrom. Invariants: no panic; findings are valid
// UTF-8 and never empty; a denial changes nothing; the output keeps everything the user set and
// only adds; run on its own output it changes nothing more.
func FuzzAnnotations(f *testing.F) {
	f.Add("AWS_CREDENTIALS GCP_CREDENTIALS", "both", "", "", "")
	f.Add("aws_credentials,,X__Y", "native", "flow", "bad name!", "GITHUB_ACCESS_TOKEN")
	f.Add("GITHUB_ACCESS_TOKEN\nAWS_CREDENTIALS", "prefect", "flow,missing", "gh-token", "")
	f.Add(strings.Repeat("A ", 100), "x", ",", "", "A..B")
	f.Add("SLACK_WEBHOOK_URL", "", "init", "", "\u00e9\u0301")
	m := secretmap.Builtin()
	keys := &StaticKeys{Secrets: map[string][]string{"aws-credentials": {"ACCESS_KEY"}, "env": {"AWS_ACCESS_KEY_ID"}}}
	f.Fuzz(func(t *testing.T, secrets, inject, containers, override, nsDefaults string) {
		annotations := map[string]string{AnnotationSecrets: secrets}
		if inject != "" {
			annotations[AnnotationInject] = inject
		}
		if containers != "" {
			annotations[AnnotationContainers] = containers
		}
		if override != "" {
			annotations[SecretOverridePrefix+"GITHUB_ACCESS_TOKEN"] = override
		}
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "run-", Namespace: "flows", Annotations: annotations},
			Spec: corev1.PodSpec{
				InitContainers: []corev1.Container{{Name: "init", Image: "i"}},
				Containers: []corev1.Container{{
					Name: "flow", Image: "i",
					Env:          []corev1.EnvVar{{Name: "GITHUB_ACCESS_TOKEN", Value: "user"}},
					EnvFrom:      []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "env"}}}},
					VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/var/run/secrets/flowauth/gcp-credentials"}},
				}, {Name: "sidecar", Image: "i"}},
				Volumes: []corev1.Volume{{Name: "data"}},
			},
		}
		for _, lookup := range []KeyLookup{nil, keys} {
			in := Input{Pod: pod, NamespaceDefaults: nsDefaults, Map: m, Keys: lookup}
			res := Pod(in)
			for _, f := range append(res.Warnings, res.Denials...) {
				if f.Message == "" || f.Reason == "" || !utf8.ValidString(f.Message) {
					t.Fatalf("finding %+v", f)
				}
			}
			if res.Denied() && res.Changed {
				t.Fatal("a denied pod was changed")
			}
			if !res.Changed {
				continue
			}
			out := res.Pod
			for i, c := range pod.Spec.Containers {
				got := out.Spec.Containers[i]
				if !equality.Semantic.DeepEqual(got.Env[:len(c.Env)], c.Env) || !equality.Semantic.DeepEqual(got.VolumeMounts[:len(c.VolumeMounts)], c.VolumeMounts) {
					t.Fatalf("container %s: user settings rewritten: %+v", c.Name, got)
				}
			}
			if out.Spec.Volumes[0].Name != "data" {
				t.Fatal("user volume rewritten")
			}
			in.Pod = out
			if again := Pod(in); again.Changed {
				t.Fatalf("second pass changed the pod again (status %q -> %q)", res.Status, again.Status)
			}
		}
	})
}
