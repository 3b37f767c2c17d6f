package mutate

import (
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flowauth/flowauth/pkg/secretmap"
)

// TestTwoNamesSettingOneEnvVarIsStableAcrossPasses: an operator's map may give two entries the
// same native env var. The first declared name owns it, in every pass: a reinvocation must not
// mistake it for a user setting or change the status.
func TestTwoNamesSettingOneEnvVarIsStableAcrossPasses(t *testing.T) {
	m, err := secretmap.Parse([]byte(`
apiVersion: flowauth.io/v1alpha1
kind: SecretMap
secrets:
  GITHUB_BOT:
    shape: string
    keys: [{name: token}]
    native: {env: [{name: GH_TOKEN, key: token}]}
  GITHUB_CI:
    shape: string
    keys: [{name: token}]
    native: {env: [{name: GH_TOKEN, key: token}]}
`))
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "run-", Annotations: map[string]string{AnnotationSecrets: "GITHUB_BOT GITHUB_CI", AnnotationContainers: "a,b"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "a", Image: "i"}, {Name: "b", Image: "i"}}},
	}
	first := Pod(Input{Pod: pod, Map: m})
	if !first.Changed || first.Status != "injected=GITHUB_BOT,GITHUB_CI; containers=a,b" {
		t.Fatalf("first pass: changed=%v status=%q", first.Changed, first.Status)
	}
	if len(first.Warnings) != 1 || !strings.Contains(first.Warnings[0].Message, "env GH_TOKEN is set by both GITHUB_BOT and GITHUB_CI; GITHUB_BOT's is used") {
		t.Errorf("want one warning naming both entries, got %+v", first.Warnings)
	}
	for _, c := range first.Pod.Spec.Containers {
		if got := indexEnv(c.Env, "GH_TOKEN"); got < 0 || c.Env[got].ValueFrom.SecretKeyRef.Name != "github-bot" {
			t.Errorf("container %s: GH_TOKEN not from github-bot: %+v", c.Name, c.Env)
		}
	}
	second := Pod(Input{Pod: first.Pod, Map: m})
	if second.Changed || second.Status != first.Status {
		t.Errorf("reinvocation changed=%v status=%q (first %q)", second.Changed, second.Status, first.Status)
	}
	for _, w := range second.Warnings {
		if w.Reason == ReasonUserEnvKept {
			t.Errorf("reinvocation took flowauth's own GH_TOKEN for a user setting: %s", w.Message)
		}
	}
}

// TestMayBeFlowRunNeverMissesAFlowRun: for every golden pod, and with namespace defaults set,
// the byte-level first pass says "may be" whenever IsFlowRun says "is".
func TestMayBeFlowRunNeverMissesAFlowRun(t *testing.T) {
	for _, c := range goldenCases(t) {
		raw, err := json.Marshal(c.pod)
		if err != nil {
			t.Fatal(err)
		}
		if IsFlowRun(c.pod.Annotations, c.pod.Labels, "AWS_CREDENTIALS") && !MayBeFlowRun(raw) {
			t.Errorf("%s: a flow run was missed", c.dir)
		}
	}
	for _, tt := range []struct {
		raw  string
		want bool
	}{
		{`{"metadata":{"labels":{"app":"web"}},"spec":{}}`, false},
		{"\n {\"metadata\":{\"labels\":{\"prefect.io/flow-run-id\":\"x\"}}}", true},
		{`{"metadata":{"labels":{"prefect.io/flow_run_id":"x"}}}`, true},
		{`{"metadata":{"labels":{"prefect.io/flow-run-name":"x"}}}`, false},
		{`{"metadata":{"annotations":{"secret.flowauth.io/AWS_CREDENTIALS":"x"}}}`, false},
		{`null`, true},
		{`["x"]`, true},
		{``, true},
	} {
		if got := MayBeFlowRun([]byte(tt.raw)); got != tt.want {
			t.Errorf("MayBeFlowRun(%q) = %v, want %v", tt.raw, got, tt.want)
		}
	}
}

// TestAbsentOptionalFilesAreNotMounted: with key lookup, a file whose optional key the Secret
// lacks is left out of the volume together with the variable pointing at it; with no file left,
// there is no volume and no mount.
func TestAbsentOptionalFilesAreNotMounted(t *testing.T) {
	m, err := secretmap.Parse([]byte(`
apiVersion: flowauth.io/v1alpha1
kind: SecretMap
secrets:
  KUBE_ACCESS:
    shape: dict
    keys: [{name: token, optional: true}, {name: CA, optional: true}]
    native:
      files: [{key: token, env: KUBE_TOKEN_FILE}, {key: CA, env: KUBE_CA_FILE}]
`))
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "run-", Namespace: "flows", Annotations: map[string]string{AnnotationSecrets: "KUBE_ACCESS", AnnotationInject: "native"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "flow", Image: "i"}}},
	}
	for _, tt := range []struct {
		keys      []string
		wantItems []string
		wantEnv   []string
	}{
		{keys: []string{"token", "CA"}, wantItems: []string{"token", "CA"}, wantEnv: []string{"KUBE_TOKEN_FILE", "KUBE_CA_FILE"}},
		{keys: []string{"CA"}, wantItems: []string{"CA"}, wantEnv: []string{"KUBE_CA_FILE"}},
		{keys: []string{}, wantItems: nil, wantEnv: nil},
	} {
		res := Pod(Input{Pod: pod, Map: m, Keys: &StaticKeys{Secrets: map[string][]string{"kube-access": tt.keys}}})
		var items, env []string
		if res.Pod != nil {
			for _, v := range res.Pod.Spec.Volumes {
				for _, it := range v.Secret.Items {
					items = append(items, it.Key)
				}
			}
			for _, e := range res.Pod.Spec.Containers[0].Env {
				env = append(env, e.Name)
			}
			if len(items) == 0 && len(res.Pod.Spec.Containers[0].VolumeMounts) > 0 {
				t.Errorf("keys %v: a mount without a volume", tt.keys)
			}
		}
		if strings.Join(items, ",") != strings.Join(tt.wantItems, ",") || strings.Join(env, ",") != strings.Join(tt.wantEnv, ",") {
			t.Errorf("keys %v: volume items %v, env %v; want %v, %v", tt.keys, items, env, tt.wantItems, tt.wantEnv)
		}
	}
}

// TestPodNeverWritesIntoTheInputsSpareCapacity: the mutated pod shares its unchanged parts with
// the input, so an append must reallocate rather than fill spare capacity of the input's
// slices, which a comparison of the input alone (up to its length) would never see.
func TestPodNeverWritesIntoTheInputsSpareCapacity(t *testing.T) {
	sentinelEnv := corev1.EnvVar{Name: "SENTINEL", Value: "untouched"}
	sentinelMount := corev1.VolumeMount{Name: "sentinel", MountPath: "/sentinel"}
	sentinelVolume := corev1.Volume{Name: "sentinel"}
	withSpare := func(c corev1.Container) corev1.Container {
		env := make([]corev1.EnvVar, 32) // room for all of AWS_CREDENTIALS and GCP_CREDENTIALS
		for i := copy(env, c.Env); i < len(env); i++ {
			env[i] = sentinelEnv
		}
		mounts := make([]corev1.VolumeMount, 8)
		for i := copy(mounts, c.VolumeMounts); i < len(mounts); i++ {
			mounts[i] = sentinelMount
		}
		c.Env, c.VolumeMounts = env[:len(c.Env)], mounts[:len(c.VolumeMounts)]
		return c
	}
	containers := make([]corev1.Container, 1, 4)
	containers[0] = withSpare(corev1.Container{Name: "job", Image: "i", Env: []corev1.EnvVar{{Name: "A", Value: "a"}}})
	volumes := make([]corev1.Volume, 8)
	volumes[0] = corev1.Volume{Name: "scratch"}
	for i := 1; i < len(volumes); i++ {
		volumes[i] = sentinelVolume
	}
	volumes = volumes[:1] // the sentinels are now spare capacity
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "run-", Annotations: map[string]string{AnnotationSecrets: "AWS_CREDENTIALS GCP_CREDENTIALS"}},
		Spec:       corev1.PodSpec{Containers: containers, Volumes: volumes},
	}
	res := Pod(Input{Pod: pod, Map: secretmap.Builtin()})
	if !res.Changed || len(res.Pod.Spec.Volumes) <= 1 || len(res.Pod.Spec.Containers[0].Env) <= 1 {
		t.Fatalf("the pod was not injected: changed=%v", res.Changed)
	}
	c := pod.Spec.Containers[0]
	for _, e := range c.Env[len(c.Env):cap(c.Env)] {
		if e != sentinelEnv {
			t.Errorf("the input's env spare capacity was written: %+v", e)
		}
	}
	for _, m := range c.VolumeMounts[len(c.VolumeMounts):cap(c.VolumeMounts)] {
		if m.Name != sentinelMount.Name || m.MountPath != sentinelMount.MountPath {
			t.Errorf("the input's mount spare capacity was written: %+v", m)
		}
	}
	for _, v := range pod.Spec.Volumes[1:cap(pod.Spec.Volumes)] {
		if v.Name != sentinelVolume.Name || v.Secret != nil {
			t.Errorf("the input's volume spare capacity was written: %+v", v)
		}
	}
	if _, ok := pod.Annotations[AnnotationStatus]; ok {
		t.Error("the status annotation was written into the input's annotations")
	}
}

// TestEnvCountIsWhatPlanForBuilds: planFor sizes its lists with envCount; for every built-in
// entry, a custom one, and each inject mode, the count is exact.
func TestEnvCountIsWhatPlanForBuilds(t *testing.T) {
	m := secretmap.Builtin()
	entries := []secretmap.Entry{secretmap.CustomEntry("MY_TOKEN")}
	for _, name := range m.Names() {
		e, _ := m.Resolve(name)
		entries = append(entries, e)
	}
	for _, e := range entries {
		for _, layers := range []Layers{LayersPrefect, LayersNative, LayersBoth} {
			if p := planFor(e, "s", layers); len(p.env) != envCount(e, layers) || cap(p.env) != len(p.env) {
				t.Errorf("%s %s: %d env vars (capacity %d), envCount %d", e.Name, layers, len(p.env), cap(p.env), envCount(e, layers))
			}
		}
	}
}

// TestHostileListsCostLittle: a flow-run pod's lists are bounded whatever their size. A 3 MiB
// annotation (the largest object the API server forwards) of container or secret names is
// refused after a scan, allocating little, with one denial that gives the count, not the list.
func TestHostileListsCostLittle(t *testing.T) {
	list := func(format string) string {
		var b strings.Builder
		for i := 0; b.Len() < 3<<20; i++ {
			fmt.Fprintf(&b, format, i)
		}
		return b.String()
	}
	for _, key := range []string{AnnotationContainers, AnnotationSkipContainers, AnnotationSecrets} {
		t.Run(key, func(t *testing.T) {
			value := list("sidecar-%d, ")
			if key == AnnotationSecrets {
				value = list("CUSTOM_%d, ")
			}
			annotations := map[string]string{AnnotationSecrets: "AWS_CREDENTIALS", key: value}
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{GenerateName: "run-", Annotations: annotations},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "flow", Image: "i"}}},
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			res := Pod(Input{Pod: pod, Map: secretmap.Builtin()})
			runtime.ReadMemStats(&after)
			if !res.Denied() || len(res.Denials) != 1 {
				t.Fatalf("want one denial, got %+v", res.Denials)
			}
			if msg := res.DenialMessage(); len(msg) > 200 {
				t.Errorf("denial of %d bytes: %.300s", len(msg), msg)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<10 {
				t.Errorf("allocated %d KiB for one pod", alloc>>10)
			}
		})
	}
}

// TestLongListsAreRefused: a flow-run container's env, envFrom and mounts, and the pod's
// volumes, are bounded; past the bound the pod is refused with one message naming the list.
func TestLongListsAreRefused(t *testing.T) {
	base := func() *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "run-", Annotations: map[string]string{AnnotationSecrets: "AWS_CREDENTIALS"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "flow", Image: "i"}}},
		}
	}
	for _, tt := range []struct {
		name string
		grow func(*corev1.Pod, int)
		max  int
		want string
	}{
		{"env", func(p *corev1.Pod, n int) {
			for i := range n {
				p.Spec.Containers[0].Env = append(p.Spec.Containers[0].Env, corev1.EnvVar{Name: fmt.Sprint("V", i), Value: "x"})
			}
		}, MaxEnv, `container "flow" has more than 1024 env vars`},
		{"envFrom", func(p *corev1.Pod, n int) {
			for i := range n {
				p.Spec.Containers[0].EnvFrom = append(p.Spec.Containers[0].EnvFrom, corev1.EnvFromSource{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: fmt.Sprint("c", i)}}})
			}
		}, MaxEnvFrom, `container "flow" has more than 256 envFrom sources`},
		{"mounts", func(p *corev1.Pod, n int) {
			for i := range n {
				p.Spec.Containers[0].VolumeMounts = append(p.Spec.Containers[0].VolumeMounts, corev1.VolumeMount{Name: fmt.Sprint("v", i), MountPath: fmt.Sprint("/m", i)})
			}
		}, MaxVolumeMounts, `container "flow" has more than 256 volume mounts`},
		{"volumes", func(p *corev1.Pod, n int) {
			for i := range n {
				p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: fmt.Sprint("v", i)})
			}
		}, MaxVolumes, `the pod has more than 256 volumes`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			at, over := base(), base()
			tt.grow(at, tt.max)
			tt.grow(over, tt.max+1)
			if res := Pod(Input{Pod: at, Map: secretmap.Builtin()}); res.Denied() {
				t.Errorf("%d items refused: %s", tt.max, res.DenialMessage())
			}
			if res := Pod(Input{Pod: over, Map: secretmap.Builtin()}); !strings.Contains(res.DenialMessage(), tt.want) {
				t.Errorf("%d items: %q, want %q", tt.max+1, res.DenialMessage(), tt.want)
			}
		})
	}
}
