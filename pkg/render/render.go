// Package render answers "what will this manifest get?" offline: every pod template in an object
// (a Pod, a Job, a CronJob, or anything with spec.template) is sent through the webhook's own pod
// handler, in process, as the API server would send the pod it makes, and the handler's JSON Patch
// is applied to the template. So what render shows is the webhook's decision, not a second
// implementation of it: the same warnings, the same denials, the same patch.
package render

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strings"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	flowadmission "github.com/flowauth/flowauth/pkg/admission"
	"github.com/flowauth/flowauth/pkg/mutate"
	"github.com/flowauth/flowauth/pkg/secretmap"
)

// Cluster is what render knows of the cluster it emulates.
type Cluster struct {
	// Map is the webhook's secret map (the built-in one, or extended from --secret-map).
	Map *secretmap.Map
	// NamespaceDefaults maps a namespace to its flowauth.io/secrets annotation.
	NamespaceDefaults map[string]string
	// NamespaceAnnotations maps a namespace to its other annotations: its owner's allow-lists.
	NamespaceAnnotations map[string]map[string]string
	// RequireAllowList is the webhook's --require-allow-list.
	RequireAllowList bool
	// Namespace is where objects without metadata.namespace go (kubectl's -n).
	Namespace string
	// Keys tells which Secret and ConfigMap keys exist; nil looks nothing up (--secret-lookup=none).
	Keys mutate.KeyLookup
	// Missing is the webhook's --missing-secret, used with Keys.
	Missing mutate.MissingPolicy
	// SkipContainers is the webhook's --skip-containers; nil is its default.
	SkipContainers []string
}

// Object is one rendered object.
type Object struct {
	Kind, Namespace, Name string
	// Rendered is the object with each pod template showing what its pods will get.
	Rendered  map[string]any
	Templates []Template
}

// Template is the decision for one pod template.
type Template struct {
	// Path locates the template in the object ("" for a Pod itself, else e.g. spec.template).
	Path string
	// FlowRun says whether flowauth acts on its pods at all.
	FlowRun bool
	// Status is the flowauth.io/status annotation its pods get.
	Status string
	// Warnings are what kubectl prints as "Warning: ..."; Denial, when set, is why the API
	// server refuses the object (or its pods).
	Warnings []string
	Denial   string
	// Patch is the webhook's JSON Patch for a pod of this template (empty when nothing changes).
	Patch []byte
}

// Denied reports whether any template of the object is refused.
func (o *Object) Denied() bool {
	for _, t := range o.Templates {
		if t.Denial != "" {
			return true
		}
	}
	return false
}

// templatePaths are where objects keep pod templates, most specific first.
var templatePaths = [][]string{{"spec", "jobTemplate", "spec", "template"}, {"spec", "template"}}

// Render decides for every pod template of obj, as the webhook would.
func Render(ctx context.Context, obj map[string]any, c Cluster) (*Object, error) {
	kind, _ := obj["kind"].(string)
	meta, _ := obj["metadata"].(map[string]any)
	name, _ := meta["name"].(string)
	if name == "" {
		name, _ = meta["generateName"].(string)
	}
	namespace, _ := meta["namespace"].(string)
	if namespace == "" {
		namespace = c.Namespace
	}
	out := &Object{Kind: kind, Namespace: namespace, Name: name, Rendered: deepCopy(obj)}
	handler := &flowadmission.PodMutator{
		Secrets: secretmap.StaticStore(c.Map), Namespaces: staticNamespaces{defaults: c.NamespaceDefaults, annotations: c.NamespaceAnnotations}, Keys: c.Keys, Missing: c.Missing, SkipContainers: skipContainers(c.SkipContainers),
		RequireAllowList: c.RequireAllowList,
	}
	if kind == "Pod" {
		t, patched, err := decide(ctx, handler, namespace, c.NamespaceDefaults[namespace], out.Rendered)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", kind, name, err)
		}
		out.Rendered, out.Templates = patched, []Template{t}
		return out, nil
	}
	for _, path := range templatePaths {
		parent, template := lookup(out.Rendered, path)
		if template == nil {
			continue
		}
		// The pod the controller will make: the template's metadata and spec, as a Pod.
		pod := map[string]any{"apiVersion": "v1", "kind": "Pod", "metadata": template["metadata"], "spec": template["spec"]}
		if pod["metadata"] == nil {
			pod["metadata"] = map[string]any{}
		}
		t, patched, err := decide(ctx, handler, namespace, c.NamespaceDefaults[namespace], pod)
		if err != nil {
			return nil, fmt.Errorf("%s %s, %s: %w", kind, name, strings.Join(path, "."), err)
		}
		t.Path = strings.Join(path, ".")
		if len(t.Patch) > 0 {
			template["metadata"], template["spec"] = patched["metadata"], patched["spec"]
			parent[path[len(path)-1]] = template
		}
		out.Templates = append(out.Templates, t)
		break
	}
	return out, nil
}

// decide sends pod to the webhook's handler as a CREATE and applies its patch.
func decide(ctx context.Context, h *flowadmission.PodMutator, namespace, defaults string, pod map[string]any) (Template, map[string]any, error) {
	raw, err := json.Marshal(pod)
	if err != nil {
		return Template{}, nil, err
	}
	req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID: "render", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		Operation: admissionv1.Create, Namespace: namespace,
	}}
	req.Object.Raw = raw
	resp := h.Handle(ctx, req)
	var t Template
	t.Warnings = resp.Warnings
	if !resp.Allowed {
		switch {
		case resp.Result == nil:
			return t, nil, errors.New("the webhook refused without a reason")
		case resp.Result.Code != http.StatusForbidden: // an error answer, not a denial
			return t, nil, errors.New(resp.Result.Message)
		}
		t.Denial = resp.Result.Message
	}
	meta, _ := pod["metadata"].(map[string]any)
	annotations := stringMap(meta["annotations"])
	t.FlowRun = mutate.IsFlowRun(annotations, stringMap(meta["labels"]), defaults)
	t.Status = annotations[mutate.AnnotationStatus]
	if len(resp.Patch) == 0 {
		return t, pod, nil
	}
	t.Patch = resp.Patch
	p, err := jsonpatch.DecodePatch(resp.Patch)
	if err != nil {
		return t, nil, fmt.Errorf("the webhook's patch: %w", err)
	}
	patchedRaw, err := p.Apply(raw)
	if err != nil {
		return t, nil, fmt.Errorf("applying the webhook's patch: %w", err)
	}
	var patched map[string]any
	if err := json.Unmarshal(patchedRaw, &patched); err != nil {
		return t, nil, err
	}
	if m, ok := patched["metadata"].(map[string]any); ok {
		t.Status = stringMap(m["annotations"])[mutate.AnnotationStatus]
	}
	return t, patched, nil
}

func skipContainers(skip []string) []string {
	if skip == nil {
		return mutate.DefaultSkipContainers
	}
	return skip
}

// staticNamespaces serves namespaces' annotations from maps, as the webhook's informer would.
type staticNamespaces struct {
	defaults    map[string]string
	annotations map[string]map[string]string
}

func (s staticNamespaces) Namespace(_ context.Context, name string) (flowadmission.Namespace, error) {
	annotations := maps.Clone(s.annotations[name])
	if d, ok := s.defaults[name]; ok {
		if annotations == nil {
			annotations = map[string]string{}
		}
		annotations[mutate.AnnotationSecrets] = d
	}
	return flowadmission.Namespace{Found: true, Annotations: annotations}, nil
}

func lookup(obj map[string]any, path []string) (parent, value map[string]any) {
	cur := obj
	for i, p := range path {
		next, ok := cur[p].(map[string]any)
		if !ok {
			return nil, nil
		}
		if i == len(path)-1 {
			return cur, next
		}
		cur = next
	}
	return nil, nil
}

func stringMap(v any) map[string]string {
	m, _ := v.(map[string]any)
	out := make(map[string]string, len(m))
	for k, v := range m {
		if s, ok := v.(string); ok {
			out[k] = s
		}
	}
	return out
}

func deepCopy(obj map[string]any) map[string]any {
	b, _ := json.Marshal(obj)
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return out
}
