package node

import (
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

const gcpKeyPath = "/var/run/secrets/flowauth/gcp-credentials/credentials.json"

// TestExampleFlowRunsAuthenticate: both example Jobs, `kubectl apply`-ed with the probe as their
// container, complete on the node, and the libraries a flow run uses find the Secrets' values
// through what flowauth injected: boto3 from the environment, google-auth from the mounted key
// file, Prefect 1 from its PREFECT__CONTEXT__SECRETS__ variables, the git token by its name.
func TestExampleFlowRunsAuthenticate(t *testing.T) {
	needNode(t)
	ns := newNamespace(t, "flows")
	creds := newCredentials(t)
	createSecrets(t, ns, creds)
	aws := "boto3 resolved credentials from env: access key " + digest(creds.AWSAccessKey) + ", secret key " + digest(creds.AWSSecretKey)

	t.Run("Prefect 1 agent", func(t *testing.T) {
		job := exampleJob(t, "prefect1-flow-run-job.yaml", "AWS_CREDENTIALS", "GCP_CREDENTIALS")
		start := time.Now()
		apply(t, ns, job)
		log := waitJob(t, ns, job.Name)["flow"]
		t.Logf("kubectl apply to Complete: %s\n%s", time.Since(start).Round(time.Millisecond), log)
		requireFinding(t, log, "AWS_CREDENTIALS", aws)
		requireFinding(t, log, "AWS_CREDENTIALS", "prefect PREFECT__CONTEXT__SECRETS__AWS_CREDENTIALS__ACCESS_KEY "+digest(creds.AWSAccessKey))
		requireFinding(t, log, "AWS_CREDENTIALS", "prefect PREFECT__CONTEXT__SECRETS__AWS_CREDENTIALS__SECRET_ACCESS_KEY "+digest(creds.AWSSecretKey))
		requireFinding(t, log, "GCP_CREDENTIALS", "google-auth loaded Credentials from "+gcpKeyPath+": file "+digest(string(creds.GCPKey))+
			", client_email "+digest(creds.GCPClientEmail)+", project "+digest(creds.GCPProject))
		requireFinding(t, log, "GCP_CREDENTIALS", "prefect PREFECT__CONTEXT__SECRETS__GCP_CREDENTIALS "+digest(string(creds.GCPKey)))
	})

	t.Run("Prefect 2/3 worker", func(t *testing.T) {
		job := exampleJob(t, "prefect2-flow-run-job.yaml", "GITHUB_ACCESS_TOKEN", "AWS_CREDENTIALS")
		start := time.Now()
		apply(t, ns, job)
		log := waitJob(t, ns, job.Name)["prefect-job"]
		t.Logf("kubectl apply to Complete: %s\n%s", time.Since(start).Round(time.Millisecond), log)
		requireFinding(t, log, "AWS_CREDENTIALS", aws)
		requireFinding(t, log, "GITHUB_ACCESS_TOKEN", "env GITHUB_ACCESS_TOKEN "+digest(creds.GitHubToken))
		// The example asks for the native layer only.
		if strings.Contains(log, "PREFECT__CONTEXT__SECRETS__") {
			t.Errorf("flowauth.io/inject: native, yet the Prefect layer is there:\n%s", log)
		}
	})
}

// TestNonRootReadOnlyFlowRunReadsItsKeyFile: a flow run as a user picks it (any uid, read-only
// root filesystem, two containers that both need the key and say so in flowauth.io/containers, a
// ConfigMap and an emptyDir beside flowauth's volume) runs on the node, and each container's
// google-auth reads the mounted key file.
func TestNonRootReadOnlyFlowRunReadsItsKeyFile(t *testing.T) {
	needNode(t)
	ns := newNamespace(t, "nonroot")
	creds := newCredentials(t)
	createSecrets(t, ns, creds)
	kubectl(t, "-n", ns, "create", "configmap", "flow-settings", "--from-literal=region=eu-west-1")
	locked := &corev1.SecurityContext{
		RunAsNonRoot: ptr.To(true), ReadOnlyRootFilesystem: ptr.To(true), AllowPrivilegeEscalation: ptr.To(false),
		Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
	mounts := []corev1.VolumeMount{{Name: "settings", MountPath: "/etc/flow"}, {Name: "scratch", MountPath: "/tmp"}}
	probe := func(name string) corev1.Container {
		return corev1.Container{Name: name, Image: cluster.Images.Probe, Command: []string{"flowauth-probe", "GCP_CREDENTIALS"}, SecurityContext: locked, VolumeMounts: mounts}
	}
	job := &batchv1.Job{
		TypeMeta:   metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"},
		ObjectMeta: metav1.ObjectMeta{Name: "locked-down"},
		Spec: batchv1.JobSpec{
			BackoffLimit: ptr.To(int32(0)),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{"flowauth.io/secrets": "GCP_CREDENTIALS", "flowauth.io/containers": "flow, uploader"}},
				Spec: corev1.PodSpec{
					RestartPolicy:   corev1.RestartPolicyNever,
					SecurityContext: &corev1.PodSecurityContext{RunAsUser: ptr.To(int64(4242)), RunAsGroup: ptr.To(int64(4242))},
					Containers:      []corev1.Container{probe("flow"), probe("uploader")},
					Volumes: []corev1.Volume{
						{Name: "settings", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "flow-settings"}}}},
						{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
					},
				},
			},
		},
	}
	apply(t, ns, job)
	for container, log := range waitJob(t, ns, job.Name) {
		if !strings.Contains(log, "flowauth-probe: uid=4242 gid=4242 read-only root filesystem: yes") {
			t.Errorf("%s did not run as uid 4242 on a read-only root filesystem:\n%s", container, log)
		}
		requireFinding(t, log, "GCP_CREDENTIALS", "google-auth loaded Credentials from "+gcpKeyPath+": file "+digest(string(creds.GCPKey)))
	}
}
