package admission

import (
	"encoding/json"

	jsonv2 "github.com/go-json-experiment/json"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// podView is the part of a pod that flowauth reads or writes: the metadata that names it and
// declares what it needs, the ServiceAccount (its allow-list), and per container the env vars, envFrom sources and mounts, plus the
// volumes. Everything else in the pod (images, commands, resources, probes, security contexts,
// status: most of its bytes) is skipped by the decoder rather than built, and it never needs to
// be: the patch only adds env vars, mounts, volumes and the status annotation, so what is not
// decoded is never in it. TestPodViewSeesWhatMutateReads holds mutate.Pod to these fields.
type podView struct {
	Metadata struct {
		Name            string                  `json:"name"`
		GenerateName    string                  `json:"generateName"`
		Namespace       string                  `json:"namespace"`
		Labels          map[string]string       `json:"labels"`
		Annotations     map[string]string       `json:"annotations"`
		OwnerReferences []metav1.OwnerReference `json:"ownerReferences"`
	} `json:"metadata"`
	Spec struct {
		ServiceAccountName string          `json:"serviceAccountName"`
		InitContainers     []containerView `json:"initContainers"`
		Containers         []containerView `json:"containers"`
		Volumes            []corev1.Volume `json:"volumes"`
	} `json:"spec"`
}

type containerView struct {
	Name         string                 `json:"name"`
	Env          []corev1.EnvVar        `json:"env"`
	EnvFrom      []corev1.EnvFromSource `json:"envFrom"`
	VolumeMounts []corev1.VolumeMount   `json:"volumeMounts"`
}

// decodePod decodes the fields of podView into a pod with encoding/json/v2 (from its mirror
// module until Go 1.27 ships it), which reads a pod in one pass and is case-sensitive, as the API
// server is. Anything v2 refuses (duplicate names, invalid UTF-8, a malformed object) is decoded
// whole by encoding/json as before, whose error names the Kubernetes type and field.
func decodePod(raw []byte) (*corev1.Pod, error) {
	var v podView
	if err := jsonv2.Unmarshal(raw, &v); err != nil {
		var pod corev1.Pod
		if err := json.Unmarshal(raw, &pod); err != nil {
			return nil, err
		}
		return &pod, nil
	}
	m := &v.Metadata
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
		Name: m.Name, GenerateName: m.GenerateName, Namespace: m.Namespace,
		Labels: m.Labels, Annotations: m.Annotations, OwnerReferences: m.OwnerReferences,
	}}
	pod.Spec.ServiceAccountName = v.Spec.ServiceAccountName
	pod.Spec.InitContainers = containers(v.Spec.InitContainers)
	pod.Spec.Containers = containers(v.Spec.Containers)
	pod.Spec.Volumes = v.Spec.Volumes
	return pod, nil
}

func containers(views []containerView) []corev1.Container {
	if views == nil {
		return nil
	}
	out := make([]corev1.Container, len(views))
	for i, c := range views {
		out[i] = corev1.Container{Name: c.Name, Env: c.Env, EnvFrom: c.EnvFrom, VolumeMounts: c.VolumeMounts}
	}
	return out
}
