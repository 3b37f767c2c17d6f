package admission

import (
	"encoding/json"
	"fmt"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flowauth/flowauth/pkg/mutate"
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
	Spec podSpecView `json:"spec"`
}

// podSpecView is the part of a pod's spec that flowauth reads: in a pod, and in the pod
// template of a Job or CronJob.
type podSpecView struct {
	ServiceAccountName string            `json:"serviceAccountName"`
	ServiceAccount     string            `json:"serviceAccount"`
	InitContainers     boundedContainers `json:"initContainers"`
	Containers         boundedContainers `json:"containers"`
	Volumes            boundedVolumes    `json:"volumes"`
}

func (v *podSpecView) spec() corev1.PodSpec {
	return corev1.PodSpec{
		ServiceAccountName: v.ServiceAccountName, DeprecatedServiceAccount: v.ServiceAccount, InitContainers: containers(v.InitContainers), Containers: containers(v.Containers), Volumes: v.Volumes,
	}
}

type containerView struct {
	Name         string         `json:"name"`
	Env          boundedEnv     `json:"env"`
	EnvFrom      boundedEnvFrom `json:"envFrom"`
	VolumeMounts boundedMounts  `json:"volumeMounts"`
}

// The lists of a container and the pod's volumes are decoded up to one item past mutate's
// bound and skipped beyond: mutate refuses such a pod, and a 3 MiB list of 50,000 mounts would
// otherwise be built whole (and grown, and scanned by the collector) first.
type (
	boundedEnv     []corev1.EnvVar
	boundedEnvFrom []corev1.EnvFromSource
	boundedMounts  []corev1.VolumeMount
	boundedVolumes []corev1.Volume
)

func (b *boundedEnv) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	return decodeBounded(dec, (*[]corev1.EnvVar)(b), mutate.MaxEnv+1)
}

func (b *boundedEnvFrom) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	return decodeBounded(dec, (*[]corev1.EnvFromSource)(b), mutate.MaxEnvFrom+1)
}

func (b *boundedMounts) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	return decodeBounded(dec, (*[]corev1.VolumeMount)(b), mutate.MaxVolumeMounts+1)
}

func (b *boundedVolumes) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	return decodeBounded(dec, (*[]corev1.Volume)(b), mutate.MaxVolumes+1)
}

// decodeBounded decodes a JSON array into list, keeping at most max items and skipping the rest
// as they stream past; null leaves list nil.
func decodeBounded[T any](dec *jsontext.Decoder, list *[]T, max int) error {
	if dec.PeekKind() == 'n' {
		_, err := dec.ReadToken()
		return err
	}
	if tok, err := dec.ReadToken(); err != nil {
		return err
	} else if tok.Kind() != '[' {
		return fmt.Errorf("want an array, got %v", tok.Kind())
	}
	*list = []T{}
	for dec.PeekKind() != ']' {
		if len(*list) == max {
			if err := dec.SkipValue(); err != nil {
				return err
			}
			continue
		}
		var item T
		if err := jsonv2.UnmarshalDecode(dec, &item); err != nil {
			return err
		}
		*list = append(*list, item)
	}
	_, err := dec.ReadToken()
	return err
}

// decodePod decodes the fields of podView into a pod with encoding/json/v2 (from its mirror
// module until Go 1.27 ships it), which reads a pod in one pass and is case-sensitive, as the API
// server is. Anything v2 refuses (duplicate names, invalid UTF-8, a malformed object) is decoded
// whole by encoding/json as before, whose error names the Kubernetes type and field.
func decodePod(raw []byte) (*corev1.Pod, error) {
	var v podView
	if err := jsonv2.Unmarshal(raw, &v, objectOptions); err != nil {
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
	pod.Spec = v.Spec.spec()
	return pod, nil
}

// objectOptions decode an object the review has already read whole and checked (the review's
// decoder refuses duplicate names), so they are not checked again: on a pod of 40,000
// annotations the check was a fifth of the request.
var objectOptions = jsontext.AllowDuplicateNames(true)

// boundedContainers decodes at most maxDecodedContainers containers and skips the rest as they
// stream past: a flow-run pod has a handful, mutate refuses one with more than
// mutate.MaxContainers, and a 3 MiB list of 50,000 would otherwise be built whole first.
type boundedContainers []containerView

const maxDecodedContainers = mutate.MaxContainers + 1

func (b *boundedContainers) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	return decodeBounded(dec, (*[]containerView)(b), maxDecodedContainers)
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
