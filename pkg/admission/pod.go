// Package admission is the thin controller-runtime handler in front of pkg/mutate: decode the
// AdmissionReview's pod, call mutate.Pod, answer with a JSON Patch, warnings or a denial. Every
// decision lives in pkg/mutate.
package admission

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/flowauth/flowauth/pkg/mutate"
	"github.com/flowauth/flowauth/pkg/secretmap"
)

var errEmptyRequest = errors.New("flowauth: the AdmissionReview has no request (its kind and operation are empty)")

// PodPath is where the API server sends pods (DESIGN.md §6).
const PodPath = "/mutate-v1-pod"

// NamespaceDefaults returns the flowauth.io/secrets annotation of a namespace ("" if none).
type NamespaceDefaults interface {
	Defaults(ctx context.Context, namespace string) (string, error)
}

// LiveNamespaceDefaults is a NamespaceDefaults from a cache that can also read one namespace
// from the API server (CachedNamespaces does).
type LiveNamespaceDefaults interface {
	NamespaceDefaults
	LiveDefaults(ctx context.Context, namespace string) (string, error)
}

// PodMutator answers pod admission requests.
type PodMutator struct {
	// Secrets holds the secret map in force.
	Secrets *secretmap.Store
	// Namespaces gives namespace defaults; nil when --namespace-defaults=false.
	Namespaces NamespaceDefaults
	// Keys tells which Secret keys exist (--secret-lookup=keys); nil looks nothing up.
	Keys mutate.KeyLookup
	// Live confirms what Keys lacks before anything is called missing; nil trusts Keys alone.
	Live LiveKeys
	// Missing is --missing-secret, used with Keys.
	Missing mutate.MissingPolicy
	// SkipContainers are never injected unless a pod names them (--skip-containers).
	SkipContainers []string
	// Metrics records outcomes; nil records nothing.
	Metrics *Metrics
	// Events records every warning and denial on the pod's Job; nil records none.
	Events EventRecorder
}

var _ admission.Handler = (*PodMutator)(nil)

// NewPodWebhook serves a PodMutator at PodPath.
func NewPodWebhook(h *PodMutator) http.Handler { return newReviewHandler("pods", h) }

// Handle mutates pod CREATE requests of flow-run pods and lets everything else through
// unchanged (DESIGN.md §3: only pod CREATE is mutated, never UPDATE, never a pod being deleted).
func (h *PodMutator) Handle(ctx context.Context, req admission.Request) admission.Response {
	if req.Kind.Kind == "" || req.Operation == "" {
		// controller-runtime passes on a review without a request (or an empty body) as an
		// empty request: answer that it is malformed rather than let it through.
		h.Metrics.admission(resultError)
		return admission.Errored(http.StatusBadRequest, errEmptyRequest)
	}
	if req.Operation != admissionv1.Create || req.SubResource != "" || req.Kind.Group != "" || req.Kind.Version != "v1" || req.Kind.Kind != "Pod" {
		h.Metrics.admission(resultSkipped)
		return admission.Allowed("flowauth only mutates pod CREATE")
	}
	// Most pods are not flow runs (matchConditions keep them away, but the webhook must be cheap
	// without them too): those are let through without decoding anything.
	if !mutate.MayBeFlowRun(req.Object.Raw) {
		h.Metrics.admission(resultPassed)
		return admission.Allowed("")
	}
	// One decode, of the fields flowauth reads: pods that are not flow runs rarely get this
	// far (see above).
	pod, err := decodePod(req.Object.Raw)
	if err != nil {
		h.Metrics.admission(resultError)
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("flowauth: request object is not a pod: %w", err))
	}
	namespace := req.Namespace // pods made by a Job controller may carry no namespace themselves
	if namespace == "" {
		namespace = pod.Namespace
	}
	defaults, err := h.namespaceDefaults(ctx, namespace, pod.Annotations, pod.Labels)
	if err != nil {
		h.Metrics.admission(resultError)
		return admission.Errored(http.StatusServiceUnavailable, fmt.Errorf("flowauth: reading the defaults of namespace %q: %w", namespace, err))
	}
	if !mutate.IsFlowRun(pod.Annotations, pod.Labels, defaults) {
		defaults, err = h.liveDefaults(ctx, namespace, pod.Labels)
		if err != nil {
			h.Metrics.admission(resultError)
			return admission.Errored(http.StatusServiceUnavailable, fmt.Errorf("flowauth: reading the defaults of namespace %q: %w", namespace, err))
		}
	}
	if !mutate.IsFlowRun(pod.Annotations, pod.Labels, defaults) {
		h.Metrics.admission(resultPassed)
		return admission.Allowed("")
	}
	m := h.Secrets.Map()
	res := h.decide(ctx, h.input(pod, namespace, defaults, m))
	h.Metrics.findings(res, m, true)
	if h.Events != nil && (len(res.Warnings) > 0 || len(res.Denials) > 0) && !isDryRun(req) {
		if job := ownerJob(pod, namespace); job != nil {
			recordFindings(h.Events, job, res, "CreatePod")
		}
	}
	warnings := messages(res.Warnings)
	// Loggers are built only when something is logged: zap encodes values eagerly.
	log := func() logr.Logger {
		return logf.FromContext(ctx).WithValues("namespace", namespace, "pod", podName(pod), "uid", req.UID)
	}

	if res.Denied() {
		h.Metrics.admission(resultDenied)
		log().Info("denied flow-run pod", "reasons", reasons(res.Denials))
		return admission.Denied(res.DenialMessage()).WithWarnings(warnings...)
	}
	result, done := resultMutated, "injected flow-run pod"
	if res.OptedOut {
		result, done = resultOptedOut, "flow-run pod opted out with "+mutate.AnnotationInject
	}
	if !res.Changed {
		if res.OptedOut {
			h.Metrics.admission(resultOptedOut)
			return admission.Allowed("")
		}
		h.Metrics.admission(resultUnchanged)
		if l := logf.FromContext(ctx).V(1); l.Enabled() {
			log().V(1).Info("flow-run pod needs no change", "status", res.Status)
		}
		return admission.Allowed("").WithWarnings(warnings...)
	}
	ops, err := jsonPatch(pod, res.Pod)
	var patch []byte
	if err == nil {
		patch, err = encodePatch(ops)
	}
	if err != nil {
		h.Metrics.admission(resultError)
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("flowauth: building the patch: %w", err))
	}
	h.Metrics.admission(result)
	if l := logf.FromContext(ctx).V(1); l.Enabled() {
		log().V(1).Info(done, "status", res.Status, "warnings", reasons(res.Warnings))
	}
	return patched(patch).WithWarnings(warnings...)
}

// patched allows with a JSON Patch that is already encoded: handed []jsonpatch.Operation,
// controller-runtime marshals each through its MarshalJSON and then re-validates that output,
// 14% of a flow-run request.
func patched(patch []byte) admission.Response {
	patchType := admissionv1.PatchTypeJSONPatch
	r := admission.Allowed("")
	r.Patch, r.PatchType = patch, &patchType
	return r
}

func (h *PodMutator) input(pod *corev1.Pod, namespace, defaults string, m *secretmap.Map) mutate.Input {
	return mutate.Input{Pod: pod, Namespace: namespace, NamespaceDefaults: defaults, Map: m, Keys: h.Keys, Missing: h.Missing, SkipContainers: h.SkipContainers}
}

func isDryRun(req admission.Request) bool { return req.DryRun != nil && *req.DryRun }

func (h *PodMutator) namespaceDefaults(ctx context.Context, namespace string, annotations, labels map[string]string) (string, error) {
	if h.Namespaces == nil || !mutate.NeedsNamespaceDefaults(annotations, labels) {
		return "", nil
	}
	return h.Namespaces.Defaults(ctx, namespace)
}

// liveDefaults reads a namespace's defaults from the API server for a Prefect flow-run pod that
// declares nothing and found no defaults in the cache (DESIGN.md §2: such a pod is a flow run
// only through its namespace's defaults, which may have been set a moment ago).
func (h *PodMutator) liveDefaults(ctx context.Context, namespace string, labels map[string]string) (string, error) {
	live, ok := h.Namespaces.(LiveNamespaceDefaults)
	if !ok || !mutate.NeedsNamespaceDefaults(nil, labels) {
		return "", nil
	}
	return live.LiveDefaults(ctx, namespace)
}

// podName names a pod in logs: pods from a Job controller have only a generateName.
func podName(p *corev1.Pod) string {
	if p.Name != "" {
		return p.Name
	}
	return p.GenerateName
}

func messages(findings []mutate.Finding) []string {
	if len(findings) == 0 {
		return nil
	}
	out := make([]string, len(findings))
	for i, f := range findings {
		out[i] = "flowauth: " + f.Message
	}
	return out
}

func reasons(findings []mutate.Finding) []string {
	out := make([]string, len(findings))
	for i, f := range findings {
		out[i] = string(f.Reason)
	}
	return out
}
