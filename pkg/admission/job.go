package admission

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	jsonv2 "github.com/go-json-experiment/json"
	admissionv1 "k8s.io/api/admission/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// JobPath is where the API server sends Jobs and CronJobs (DESIGN.md §6).
const JobPath = "/validate-batch-v1-job"

// TemplateValidator checks the pod template of a Job or CronJob at apply time with exactly the
// decision the pod will get, so `kubectl apply` prints the warnings (and, in deny mode, the Job
// is refused) before any pod exists. It only validates: a Job is never changed.
type TemplateValidator struct {
	Pods *PodMutator
}

var _ admission.Handler = (*TemplateValidator)(nil)

// NewTemplateWebhook serves a TemplateValidator at JobPath.
func NewTemplateWebhook(v *TemplateValidator) http.Handler { return newReviewHandler("jobs", v) }

// Handle answers CREATE and UPDATE of batch/v1 Jobs and CronJobs.
func (v *TemplateValidator) Handle(ctx context.Context, req admission.Request) admission.Response {
	h := v.Pods
	kind := req.Kind.Kind
	if kind == "" || req.Operation == "" {
		return admission.Errored(http.StatusBadRequest, errEmptyRequest)
	}
	if (req.Operation != admissionv1.Create && req.Operation != admissionv1.Update) || req.SubResource != "" ||
		req.Kind.Group != batchv1.GroupName || (kind != "Job" && kind != "CronJob") {
		return admission.Allowed("flowauth only checks Job and CronJob pod templates")
	}
	owner, template, err := decodeTemplate(kind, req.Object.Raw)
	if err != nil {
		return v.errored(ctx, req, "", http.StatusBadRequest, fmt.Errorf("flowauth: request object is not a batch/v1 %s: %w", kind, err))
	}
	// DESIGN.md §3: an update that leaves the pod template as it was (a label, a finalizer
	// removed by the garbage collector, a status) and anything being deleted is never refused,
	// and says nothing again: the template was judged when it was created or last changed.
	if owner.GetDeletionTimestamp() != nil {
		h.Metrics.template(kind, resultUnchanged)
		return admission.Allowed("flowauth does not check an object being deleted")
	}
	if req.Operation == admissionv1.Update {
		_, oldTemplate, err := decodeTemplate(kind, req.OldObject.Raw)
		if err == nil && equality.Semantic.DeepEqual(oldTemplate, template) {
			h.Metrics.template(kind, resultUnchanged)
			return admission.Allowed("flowauth checks a pod template only when it changes")
		}
	}
	namespace := req.Namespace
	if namespace == "" {
		namespace = owner.GetNamespace()
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Labels: template.Labels, Annotations: template.Annotations},
		Spec:       template.Spec,
	}
	ns, served, err := h.namespace(ctx, namespace, pod.Annotations, pod.Labels)
	if err != nil {
		return v.errored(ctx, req, owner.GetName(), http.StatusServiceUnavailable, fmt.Errorf("flowauth: reading namespace %q: %w", namespace, err))
	}
	if !served {
		h.Metrics.template(kind, resultNotServed)
		return admission.Allowed("")
	}
	m := h.Secrets.Map()
	res := h.decide(ctx, h.input(pod, namespace, ns, m))
	if !res.FlowRun {
		h.Metrics.template(kind, resultPassed)
		return admission.Allowed("")
	}
	if res.OptedOut {
		h.Metrics.template(kind, resultOptedOut)
		return admission.Allowed("")
	}
	h.Metrics.findings(res, m, false)
	if !isDryRun(req) {
		recordFindings(h.Events, h.Metrics, owner, res, "Validate"+kind)
	}
	warnings := messages(res.Warnings)
	if res.Denied() {
		h.Metrics.template(kind, resultDenied)
		logf.FromContext(ctx).Info("denied "+kind+" with a flow-run pod template", "namespace", logged(namespace), "name", logged(owner.GetName()), "reasons", reasons(res.Denials))
		return admission.Denied(res.DenialMessage()).WithWarnings(warnings...)
	}
	if len(warnings) > 0 {
		h.Metrics.template(kind, "warned")
	} else {
		h.Metrics.template(kind, "allowed")
	}
	return admission.Allowed("").WithWarnings(warnings...)
}

// templateOwner is a Job or CronJob: an object Events can refer to.
type templateOwner interface {
	runtime.Object
	metav1.Object
}

// templateView is what flowauth reads of a Job or CronJob: the metadata that names it (for
// Events) and says whether it is being deleted, and its pod template as podView reads a pod.
type templateView struct {
	Metadata struct {
		Name              string       `json:"name"`
		Namespace         string       `json:"namespace"`
		UID               types.UID    `json:"uid"`
		DeletionTimestamp *metav1.Time `json:"deletionTimestamp"`
	} `json:"metadata"`
	Spec struct {
		Template    podTemplateView `json:"template"`
		JobTemplate struct {
			Spec struct {
				Template podTemplateView `json:"template"`
			} `json:"spec"`
		} `json:"jobTemplate"`
	} `json:"spec"`
}

type podTemplateView struct {
	Metadata struct {
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	Spec podSpecView `json:"spec"`
}

// decodeTemplate reads a Job's or CronJob's pod template with encoding/json/v2, skipping what
// flowauth does not read (as decodePod does for pods); anything v2 refuses is decoded whole by
// encoding/json, whose error names the Kubernetes type and field.
func decodeTemplate(kind string, raw []byte) (templateOwner, *corev1.PodTemplateSpec, error) {
	var v templateView
	if err := jsonv2.Unmarshal(raw, &v, objectOptions); err != nil {
		return decodeWhole(kind, raw)
	}
	meta := metav1.ObjectMeta{Name: v.Metadata.Name, Namespace: v.Metadata.Namespace, UID: v.Metadata.UID, DeletionTimestamp: v.Metadata.DeletionTimestamp}
	t := &v.Spec.Template
	var owner templateOwner = &batchv1.Job{TypeMeta: metav1.TypeMeta{APIVersion: batchv1.SchemeGroupVersion.String(), Kind: kind}, ObjectMeta: meta}
	if kind == "CronJob" {
		t = &v.Spec.JobTemplate.Spec.Template
		owner = &batchv1.CronJob{TypeMeta: metav1.TypeMeta{APIVersion: batchv1.SchemeGroupVersion.String(), Kind: kind}, ObjectMeta: meta}
	}
	return owner, &corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: t.Metadata.Labels, Annotations: t.Metadata.Annotations},
		Spec:       t.Spec.spec(),
	}, nil
}

func decodeWhole(kind string, raw []byte) (templateOwner, *corev1.PodTemplateSpec, error) {
	if kind == "CronJob" {
		var cj batchv1.CronJob
		if err := json.Unmarshal(raw, &cj); err != nil {
			return nil, nil, err
		}
		cj.TypeMeta = metav1.TypeMeta{APIVersion: batchv1.SchemeGroupVersion.String(), Kind: kind}
		return &cj, &cj.Spec.JobTemplate.Spec.Template, nil
	}
	var job batchv1.Job
	if err := json.Unmarshal(raw, &job); err != nil {
		return nil, nil, err
	}
	job.TypeMeta = metav1.TypeMeta{APIVersion: batchv1.SchemeGroupVersion.String(), Kind: kind}
	return &job, &job.Spec.Template, nil
}

// errored answers a Job or CronJob flowauth could not check, counts it and logs it with its
// namespace and name (see PodMutator.errored).
func (v *TemplateValidator) errored(ctx context.Context, req admission.Request, name string, code int32, err error) admission.Response {
	v.Pods.Metrics.template(req.Kind.Kind, resultError)
	logError(ctx, err, "namespace", req.Namespace, "kind", req.Kind.Kind, "name", name, "uid", string(req.UID))
	return admission.Errored(code, err)
}
