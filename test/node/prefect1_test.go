package node

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/flowauth/flowauth/pkg/secretmap"
	"github.com/flowauth/flowauth/test/localcluster"
)

// prefect1Read is run in the flow-run pod by Debian's python3 with Prefect 1.4.1 on its path: for
// each name, what Prefect's own Secret(NAME).get() returns, as a digest of its JSON form (keys
// sorted), never the value. PREFECT__CLOUD__USE_LOCAL_SECRETS=true keeps Secret.get() to the
// context (filled from the environment at `import prefect`), so nothing leaves the machine.
const prefect1Read = `
import hashlib, json, sys
import prefect
from prefect.client import Secret
assert prefect.__version__ == "1.4.1", prefect.__version__
for name in sys.argv[1:]:
    try:
        value = Secret(name).get()
    except Exception as e:
        print("missing", name, type(e).__name__)
        continue
    doc = json.dumps(value, sort_keys=True, separators=(",", ":"))
    # Prefect's dicts are its Config (a dict): what its tasks index into.
    kind = "dict" if isinstance(value, dict) else type(value).__name__
    print("ok", name, kind, "sha256:" + hashlib.sha256(doc.encode()).hexdigest()[:16])
`

// TestPrefect1ReadsEveryDefaultName (issue 30, item 4): with a Secret for each of Prefect's 17
// default secret names, a flow-run pod that declares all of them runs Prefect 1.4.1's own code
// (../shared/prefect1, unpacked by its setup.sh and mounted read-only into the pod), and
// Secret(NAME).get() returns each Secret's value in the shape Prefect's tasks expect: a string, or
// a dict of the Secret's keys, or the parsed service-account key.
func TestPrefect1ReadsEveryDefaultName(t *testing.T) {
	needNode(t)
	setup := filepath.Join(root, "..", "shared", "prefect1", "setup.sh")
	if _, err := os.Stat(setup); err != nil {
		t.Fatalf("Prefect 1.4.1 comes from ../shared/prefect1 beside the project: %v", err)
	}
	dir := t.TempDir()
	// setup.sh installs Prefect 1's dependencies from Debian on this machine (the node's host) when
	// they are missing; the pod, whose Debian is the same release, reads them from here.
	out, err := exec.CommandContext(context.Background(), "bash", setup, dir).Output()
	if err != nil {
		t.Fatalf("%s: %v", setup, err)
	}
	hostPath := strings.TrimSpace(string(out))

	ns := newNamespace(t, "prefect1")
	m := secretmap.Builtin()
	names := m.Names()
	if len(names) != 17 {
		t.Fatalf("the built-in map has %d names, want Prefect's 17", len(names))
	}
	want := map[string]string{}
	for _, name := range names {
		e, _ := m.Lookup(name)
		args := []string{"-n", ns, "create", "secret", "generic", e.SecretName}
		var expect any
		switch e.Shape {
		case secretmap.ShapeJSON:
			key, err := localcluster.ServiceAccountKey("flowauth-p1-"+randomHex(3), "p1-"+randomHex(4)+"@flowauth-test.iam.gserviceaccount.com")
			if err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(t.TempDir(), "key.json")
			if err := os.WriteFile(file, key, 0o600); err != nil {
				t.Fatal(err)
			}
			args = append(args, "--from-file="+e.Keys[0].Name+"="+file)
			otherSecretValues = append(otherSecretValues, string(key))
			if err := json.Unmarshal(key, &expect); err != nil {
				t.Fatal(err)
			}
		case secretmap.ShapeDict:
			dict := map[string]any{}
			for _, k := range e.Keys {
				v := "v" + randomHex(12)
				otherSecretValues = append(otherSecretValues, v)
				dict[k.Name] = v
				args = append(args, "--from-literal="+k.Name+"="+v)
			}
			expect = dict
		default:
			v := "v" + randomHex(12)
			otherSecretValues = append(otherSecretValues, v)
			args = append(args, "--from-literal="+e.Keys[0].Name+"="+v)
			expect = v
		}
		kubectl(t, args...)
		doc, err := json.Marshal(expect)
		if err != nil {
			t.Fatal(err)
		}
		kind := map[secretmap.Shape]string{secretmap.ShapeJSON: "dict", secretmap.ShapeDict: "dict"}[e.Shape]
		want[name] = "ok " + name + " " + orDefault(kind, "str") + " " + digest(string(doc))
	}

	const mount = "/opt/prefect1"
	var pythonPath []string
	for _, p := range strings.Split(hostPath, ":") {
		pythonPath = append(pythonPath, mount+strings.TrimPrefix(p, dir))
	}
	pythonPath = append(pythonPath, "/opt/debian-dist-packages")
	job := &batchv1.Job{
		TypeMeta:   metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"},
		ObjectMeta: metav1.ObjectMeta{Name: "prefect1-secrets"},
		Spec: batchv1.JobSpec{
			BackoffLimit: ptr.To(int32(0)),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{"flowauth.io/secrets": strings.Join(names, ", ")}},
				Spec: corev1.PodSpec{
					RestartPolicy: corev1.RestartPolicyNever,
					Containers: []corev1.Container{{
						Name: "flow", Image: cluster.Images.Probe,
						Command: append([]string{"/usr/bin/python3", "-c", prefect1Read}, names...),
						Env: []corev1.EnvVar{
							{Name: "PYTHONPATH", Value: strings.Join(pythonPath, ":")},
							{Name: "PREFECT__CLOUD__USE_LOCAL_SECRETS", Value: "true"},
							{Name: "HOME", Value: "/tmp"},
						},
						VolumeMounts: []corev1.VolumeMount{
							{Name: "prefect1", MountPath: mount, ReadOnly: true},
							{Name: "debian-dist-packages", MountPath: "/opt/debian-dist-packages", ReadOnly: true},
						},
					}},
					Volumes: []corev1.Volume{
						{Name: "prefect1", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: dir}}},
						{Name: "debian-dist-packages", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/usr/lib/python3/dist-packages"}}},
					},
				},
			},
		},
	}
	start := time.Now()
	apply(t, ns, job)
	log := waitJob(t, ns, job.Name)["flow"]
	t.Logf("kubectl apply to Complete: %s\n%s", time.Since(start).Round(time.Millisecond), log)
	for _, name := range names {
		if !strings.Contains(log, want[name]+"\n") {
			t.Errorf("Prefect 1.4.1's Secret(%q).get() did not return the Secret's value: want %q", name, want[name])
		}
	}
}
