// Package admission is the thin controller-runtime handler in front of pkg/mutate: decode the
// AdmissionReview's pod, call mutate.Pod, answer with a JSON Patch, warnings or a denial. Every
// decision lives in pkg/mutate.
package admission

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/flowauth/flowauth/pkg/mutate"
	"github.com/flowauth/flowauth/pkg/secretmap"
)

var errEmptyRequest = errors.New("flowauth: the AdmissionReview has no request (its kind and operation are empty)")

// PodPath is where the API server sends pods (DESIGN.md §6).
const PodPath = "/mutate-v1-pod"

// PodMutator answers pod admission requests.
type PodMutator struct {
	// Secrets holds the secret map in force.
	Secrets *secretmap.Store
	// Namespaces gives the request's Namespace: whether it is opted in, its defaults and its
	// owner's allow-list; nil without a cluster connection.
	Namespaces Namespaces
	// IgnoreNamespaceDefaults leaves the namespaces' flowauth.io/secrets unread
	// (--namespace-defaults=false).
	IgnoreNamespaceDefaults bool
	// Selector is the namespaces the webhook serves (its configurations' namespaceSelector,
	// --namespace-selector); nil serves every namespace. The API server sends nothing else, so a
	// request naming another namespace did not come from it: it is let through untouched, with
	// nothing looked up, recorded or said about that namespace.
	Selector labels.Selector
	// RequireAllowList refuses names in namespaces without an allow-list (--require-allow-list).
	RequireAllowList bool
	// KeyNamespaces are the namespaces whose keys Keys holds (--secret-lookup-namespaces); empty:
	// all. Pods elsewhere are not checked, and are told why.
	KeyNamespaces []string
	// Confirmations paces the live reads of each namespace; nil does not pace them.
	Confirmations *FairLimiter
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
		return h.errored(ctx, req, "", http.StatusBadRequest, errEmptyRequest)
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
		return h.errored(ctx, req, "", http.StatusBadRequest, fmt.Errorf("flowauth: request object is not a pod: %w", err))
	}
	namespace := req.Namespace // pods made by a Job controller may carry no namespace themselves
	if namespace == "" {
		namespace = pod.Namespace
	}
	ns, served, err := h.namespace(ctx, namespace, pod.Annotations, pod.Labels)
	if err != nil {
		return h.errored(ctx, req, podName(pod), http.StatusServiceUnavailable, fmt.Errorf("flowauth: reading namespace %q: %w", namespace, err))
	}
	if !served {
		h.Metrics.admission(resultNotServed)
		return admission.Allowed("")
	}
	if !mutate.IsFlowRun(pod.Annotations, pod.Labels, h.defaults(ns)) {
		h.Metrics.admission(resultPassed)
		return admission.Allowed("")
	}
	m := h.Secrets.Map()
	res := h.decide(ctx, h.input(pod, namespace, ns, m))
	h.Metrics.findings(res, m, true)
	if h.Events != nil && (len(res.Warnings) > 0 || len(res.Denials) > 0) && !isDryRun(req) {
		if job := ownerJob(pod, namespace); job != nil {
			recordFindings(h.Events, h.Metrics, job, res, "CreatePod")
		}
	}
	warnings := messages(res.Warnings)
	// Loggers are built only when something is logged: zap encodes values eagerly.
	log := func() logr.Logger {
		return logf.FromContext(ctx).WithValues("namespace", logged(namespace), "pod", logged(podName(pod)), "uid", logged(string(req.UID)))
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
			log().V(1).Info("flow-run pod needs no change", "status", truncate(res.Status, maxNote))
		}
		return admission.Allowed("").WithWarnings(warnings...)
	}
	ops, err := jsonPatch(pod, res.Pod)
	var patch []byte
	if err == nil {
		patch, err = encodePatch(ops)
	}
	if err != nil {
		return h.errored(ctx, req, podName(pod), http.StatusInternalServerError, fmt.Errorf("flowauth: building the patch: %w", err))
	}
	h.Metrics.admission(result)
	if l := logf.FromContext(ctx).V(1); l.Enabled() {
		log().V(1).Info(done, "status", truncate(res.Status, maxNote), "warnings", reasons(res.Warnings))
	}
	return patched(patch).WithWarnings(warnings...)
}

// errored answers a request flowauth could not handle, counts it and logs it with the request's
// namespace and pod: the FlowauthAdmissionErrors runbook starts from that log line. The error
// names what failed, never a value of the pod.
func (h *PodMutator) errored(ctx context.Context, req admission.Request, pod string, code int32, err error) admission.Response {
	h.Metrics.admission(resultError)
	logError(ctx, err, "namespace", req.Namespace, "pod", pod, "uid", string(req.UID))
	return admission.Errored(code, err)
}

// maxLogged bounds each request-given string a log line carries (a Kubernetes name's limit): a
// mutating webhook sees a pod before the API server validates its name, and a review that did
// not come from the API server can put megabytes in its namespace or UID; none of it may reach
// the log whole.
const maxLogged = 253

// logged is a request-given string as log lines carry it: cut at maxLogged.
func logged(s string) string { return truncate(s, maxLogged) }

// logError logs a failed request: its error (cut at an Event note's size) and the request-given
// strings of keysAndValues (key, value, ...), each cut at maxLogged.
func logError(ctx context.Context, err error, keysAndValues ...string) {
	kv := make([]any, len(keysAndValues))
	for i, s := range keysAndValues {
		kv[i] = logged(s)
	}
	logf.FromContext(ctx).Error(errors.New(truncate(err.Error(), maxNote)), "admission request failed", kv...)
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

func (h *PodMutator) input(pod *corev1.Pod, namespace string, ns Namespace, m *secretmap.Map) mutate.Input {
	in := mutate.Input{
		Pod: pod, Namespace: namespace, NamespaceDefaults: h.defaults(ns), NamespaceAnnotations: ns.Annotations, RequireAllowList: h.RequireAllowList,
		Map: m, Keys: h.Keys, Missing: h.Missing, SkipContainers: h.SkipContainers,
	}
	if h.Keys != nil && len(h.KeyNamespaces) > 0 && !slices.Contains(h.KeyNamespaces, namespace) {
		in.Keys, in.KeysNotWatched = nil, true
	}
	return in
}

func (h *PodMutator) defaults(ns Namespace) string {
	if h.IgnoreNamespaceDefaults {
		return ""
	}
	return ns.Defaults()
}

func isDryRun(req admission.Request) bool { return req.DryRun != nil && *req.DryRun }

// namespace reads the request's Namespace for a pod that may be a flow run, and tells whether
// the webhook serves it (Selector). Pods that declare nothing and carry no Prefect label are
// not flow runs wherever they are: nothing is read for them.
func (h *PodMutator) namespace(ctx context.Context, name string, annotations, podLabels map[string]string) (ns Namespace, served bool, err error) {
	if h.Namespaces == nil || !mutate.NeedsNamespaceDefaults(annotations, podLabels) {
		return Namespace{}, true, nil
	}
	if ns, err = h.Namespaces.Namespace(ctx, name); err != nil {
		return ns, false, err
	}
	live, canReadLive := h.Namespaces.(LiveNamespaces)
	served = h.selects(ns)
	// A namespace created, labelled or given defaults a moment ago may not be in the cache yet:
	// read it from the API server before leaving the pod alone. Only a namespace the cache holds
	// and serves has reads of its own, paced as its Secrets' are; every other one (not served,
	// or not in the cache: nothing says it exists) shares one small budget, so reviews that do
	// not come from the API server, naming namespaces that do not exist, cannot spend the reads
	// that served namespaces need.
	stale := !ns.Found || !served || (!h.IgnoreNamespaceDefaults && !mutate.IsFlowRun(annotations, podLabels, h.defaults(ns)))
	if !stale || !canReadLive {
		return ns, served, nil
	}
	if ns.Found && served {
		if !h.Confirmations.allow(name) {
			h.Metrics.namespaceRead(false)
			return ns, served, nil
		}
	} else if !h.Confirmations.allowUnserved() {
		h.Metrics.namespaceRead(false)
		return ns, served, nil
	}
	h.Metrics.namespaceRead(true)
	if ns, err = live.LiveNamespace(ctx, name); err != nil {
		return ns, false, err
	}
	return ns, h.selects(ns), nil
}

// selects tells whether the webhook serves a namespace. With a cluster connection, one that
// does not exist is never served, whatever the selector.
func (h *PodMutator) selects(ns Namespace) bool {
	if h.Namespaces != nil && !ns.Found {
		return false
	}
	return h.Selector == nil || h.Selector.Matches(labels.Set(ns.Labels))
}

// podName names a pod in logs: pods from a Job controller have only a generateName.
func podName(p *corev1.Pod) string {
	if p.Name != "" {
		return p.Name
	}
	return p.GenerateName
}

// The answer's warnings are bounded: the API server may cut warnings over 256 characters and
// drop any past 4 KiB in all, so flowauth sends each once, each cut at maxWarning bytes, and at
// most maxWarnings bytes of them, then says once how many were left out and where they are.
const (
	maxWarning  = 1024
	maxWarnings = 8 << 10
)

func messages(findings []mutate.Finding) []string {
	if len(findings) == 0 {
		return nil
	}
	out := make([]string, 0, len(findings))
	size, left := 0, 0
	for _, f := range findings {
		msg := truncate("flowauth: "+f.Message, maxWarning)
		switch {
		case slices.Contains(out, msg):
		case size+len(msg) > maxWarnings:
			left++
		default:
			out = append(out, msg)
			size += len(msg)
		}
	}
	if left > 0 {
		out = append(out, fmt.Sprintf("flowauth: %d more warnings left out; the pod's %s annotation and the Job's Events say what was done", left, mutate.AnnotationStatus))
	}
	return out
}

// reasons lists the findings' reasons for a log line, each once: a hostile pod's thousands of
// findings share a handful of reasons.
func reasons(findings []mutate.Finding) []string {
	var out []string
	for _, f := range findings {
		if r := string(f.Reason); !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out
}
