// Package mutate turns a flow-run pod's declaration into the env vars and read-only mounts of
// DESIGN.md §2–§3. It is pure: a pod, the namespace's defaults and the secret map in; a mutated
// copy, findings and a status line out. No client, no logger, no clock, no globals.
package mutate

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/flowauth/flowauth/pkg/secretmap"
)

// Input is everything a decision depends on.
type Input struct {
	// Pod is the pod as the API server sent it; it is never modified.
	Pod *corev1.Pod
	// NamespaceDefaults is the raw flowauth.io/secrets value of the pod's Namespace, "" if none.
	NamespaceDefaults string
	// Map is the secret map in force.
	Map *secretmap.Map
	// Namespace is the request's namespace; the pod's own is used when empty.
	Namespace string
	// Keys, when set, tells which Secret and ConfigMap keys exist (--secret-lookup=keys).
	Keys KeyLookup
	// Missing is what a missing Secret or required key is, with Keys; "" means MissingWarn.
	Missing MissingPolicy
	// SkipContainers are containers never injected unless flowauth.io/containers names them
	// (the webhook's --skip-containers, by default DefaultSkipContainers).
	SkipContainers []string
	// NamespaceAnnotations are the annotations of the pod's Namespace: its owner's allow-list
	// (AnnotationAllowedSecrets) is read from them. nil: the namespace has none.
	NamespaceAnnotations map[string]string
	// RequireAllowList refuses every name in a namespace without an allow-list
	// (--require-allow-list).
	RequireAllowList bool
	// KeysNotWatched is true when key lookup is on but the namespace is not among those whose
	// keys are watched: nothing is checked there, and the pod is told so (never "not found").
	KeysNotWatched bool
}

// Finding is one warning or denial: a reason for metrics and Events, a message for people that
// names the annotation and the entry verbatim. Messages never hold a secret value: flowauth
// never sees one.
type Finding struct {
	Reason  Reason
	Message string
}

// Result is the outcome of Pod.
type Result struct {
	// FlowRun is false for pods that are not flow runs; everything else is then empty.
	FlowRun bool
	// Pod is the mutated copy when Changed; nil otherwise. It shares every field it did not
	// change with the input pod: treat both as read-only.
	Pod     *corev1.Pod
	Changed bool
	// Denials, when not empty, mean the pod cannot be served correctly and must be refused.
	Denials  []Finding
	Warnings []Finding
	// Status is the flowauth.io/status value written on the pod.
	Status string
	// Injected lists the declared names served in at least one container, in declaration order.
	Injected []string
	// OptedOut is true for a flow-run pod with flowauth.io/inject: "false": nothing is injected
	// and only the status annotation is written.
	OptedOut bool
}

// Denied reports whether the pod must be refused.
func (r *Result) Denied() bool { return len(r.Denials) > 0 }

// DenialMessage joins the denials into the one message the API server shows: all of them, up
// to maxDenialMessage bytes, then how many more there are.
func (r *Result) DenialMessage() string {
	var b strings.Builder
	b.WriteString("flowauth: ")
	for i, d := range r.Denials {
		if i > 0 && b.Len()+len(d.Message) > maxDenialMessage {
			fmt.Fprintf(&b, "; and %d more", len(r.Denials)-i)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(d.Message)
	}
	return b.String()
}

// maxDenialMessage bounds the message of a refusal (the API server shows all of it).
const maxDenialMessage = 4 << 10

func (r *Result) warn(reason Reason, format string, args ...any) {
	r.Warnings = append(r.Warnings, Finding{Reason: reason, Message: fmt.Sprintf(format, args...)})
}

func (r *Result) deny(reason Reason, format string, args ...any) {
	r.Denials = append(r.Denials, Finding{Reason: reason, Message: fmt.Sprintf(format, args...)})
}

// IsFlowRun tells whether flowauth acts on a pod (DESIGN.md §2): it declares flowauth.io/secrets,
// or it carries a Prefect flow-run label in a namespace that has defaults. It reads only metadata,
// so pods that are not flow runs cost next to nothing.
func IsFlowRun(annotations, labels map[string]string, namespaceDefaults string) bool {
	if _, ok := annotations[AnnotationSecrets]; ok {
		return true
	}
	return strings.TrimSpace(namespaceDefaults) != "" && hasPrefectLabel(labels)
}

// MayBeFlowRun is IsFlowRun's cheap first pass over a pod's raw JSON: false when the object
// names neither flowauth.io/secrets nor a Prefect flow-run label, so it cannot be a flow run
// whatever its namespace says, and nothing needs decoding. The API server encodes objects
// without escaping these characters, so the keys are found whenever they are there. Input that
// is not a JSON object is not judged here (true): the decoder says what is wrong with it.
func MayBeFlowRun(raw []byte) bool {
	trimmed := bytes.TrimLeft(raw, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return true
	}
	for _, key := range flowRunKeys {
		if bytes.Contains(raw, key) {
			return true
		}
	}
	return false
}

// flowRunKeys are the JSON keys IsFlowRun looks at, quoted as they appear in an object.
var flowRunKeys = [][]byte{
	[]byte(`"` + AnnotationSecrets + `"`),
	[]byte(`"` + LabelFlowRunIDPrefect1 + `"`),
	[]byte(`"` + LabelFlowRunIDPrefect2 + `"`),
}

// NeedsNamespaceDefaults tells whether the namespace's defaults can matter to a pod: only to one
// that declares secrets or carries a Prefect flow-run label. Every other pod needs no lookup.
func NeedsNamespaceDefaults(annotations, labels map[string]string) bool {
	_, declared := annotations[AnnotationSecrets]
	return declared || hasPrefectLabel(labels)
}

func hasPrefectLabel(labels map[string]string) bool {
	_, p1 := labels[LabelFlowRunIDPrefect1]
	_, p2 := labels[LabelFlowRunIDPrefect2]
	return p1 || p2
}

// Pod decides what a flow-run pod gets and returns the mutated copy. It is idempotent per
// container and per item: run on its own output it changes nothing, and run on a pod to which
// another webhook added a container since, it injects into that container only.
func Pod(in Input) Result {
	pod := in.Pod
	if !IsFlowRun(pod.Annotations, pod.Labels, in.NamespaceDefaults) {
		return Result{}
	}
	if strings.TrimSpace(pod.Annotations[AnnotationInject]) == InjectFalse {
		return optOut(pod)
	}
	r := Result{FlowRun: true}
	if len(pod.Spec.InitContainers)+len(pod.Spec.Containers) > MaxContainers {
		r.deny(ReasonTooManyContainers, "the pod has more than %d containers (init containers included), which is the most flowauth serves in a flow-run pod", MaxContainers)
		return r
	}
	if len(pod.Spec.Volumes) > MaxVolumes {
		r.deny(ReasonTooManyItems, "the pod has more than %d volumes, which is the most flowauth serves in a flow-run pod", MaxVolumes)
		return r
	}
	// The API server validates a pod only after mutating admission: a name that it would refuse
	// is refused here, so that no message, status or annotation carries an unchecked name.
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range list {
			if msgs := invalidLabel(c.Name); len(msgs) > 0 {
				r.deny(ReasonInvalidContainerName, "container name %s is not valid: %s", quote(c.Name), strings.Join(msgs, "; "))
				return r
			}
			for _, l := range []struct {
				what     string
				len, max int
			}{{"env vars", len(c.Env), MaxEnv}, {"envFrom sources", len(c.EnvFrom), MaxEnvFrom}, {"volume mounts", len(c.VolumeMounts), MaxVolumeMounts}} {
				if l.len > l.max {
					r.deny(ReasonTooManyItems, "container %q has more than %d %s, which is the most flowauth serves in a flow-run pod", c.Name, l.max, l.what)
					return r
				}
			}
		}
	}

	podNames, problems := parseNames("annotation "+AnnotationSecrets, pod.Annotations[AnnotationSecrets])
	for _, p := range problems {
		r.deny(ReasonInvalidSecretName, "%s", p)
	}
	nsNames, nsProblems := parseNames("namespace annotation "+AnnotationSecrets, in.NamespaceDefaults)
	for _, p := range nsProblems {
		// The namespace's owner made this mistake, not the pod's: warn and serve the rest
		// rather than block every flow run in the namespace.
		r.warn(ReasonInvalidNamespaceSecret, "%s; this namespace default is skipped", p)
	}
	names := podNames
	for _, n := range nsNames {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}

	layers := parseLayers(pod.Annotations, &r)
	targets, skipped := selectContainers(pod, in.SkipContainers, &r)
	overrides := parseOverrides(pod.Annotations, names, &r)
	if r.Denied() {
		return r
	}
	declared := len(names)
	list := allowListFor(in, &r)
	names = enforceAllowList(in, list, podNames, names, overrides, &r)
	if r.Denied() {
		return r
	}
	if len(names) == 0 {
		if len(nsProblems) == 0 && declared == 0 {
			r.warn(ReasonEmptyDeclaration, "annotation %s declares no secret name; nothing injected", AnnotationSecrets)
		}
		return r
	}

	plans := make([]plan, 0, len(names))
	entries := make([]secretmap.Entry, 0, len(names))
	for _, name := range names {
		entry, ok := in.Map.Resolve(name)
		if !ok {
			hint := ""
			if s := suggest(name, in.Map.Names()); s != "" {
				hint = fmt.Sprintf(" (did you mean %q?)", s)
			}
			r.warn(ReasonUnknownSecretName, "annotation %s: entry %q is not a known default secret name%s; injected as a custom string secret from key %q of Secret %q",
				AnnotationSecrets, name, hint, secretmap.CustomKey, secretName(entry, overrides))
		}
		plans = append(plans, planFor(entry, secretName(entry, overrides), layers))
		entries = append(entries, entry)
	}
	namespace := in.Namespace
	if namespace == "" {
		namespace = pod.Namespace
	}
	if in.KeysNotWatched {
		r.warn(ReasonNamespaceNotWatched, "namespace %q is not among the namespaces whose Secrets flowauth watches (the chart's secretLookupNamespaces, the webhook's --secret-lookup-namespaces), so whether %s and their keys exist is not checked: add the namespace there",
			namespace, some(secretsOf(plans)))
	}
	if in.Keys != nil {
		refuseRestrictedTypes(in, list, namespace, plans, &r)
		checkKeys(in, namespace, entries, plans, &r)
		if r.Denied() {
			return r
		}
	}

	claimEnv(plans, &r)
	if size := patchEstimate(plans, len(targets)); size > MaxPatchBytes {
		r.deny(ReasonInjectionTooLarge, "%s", InjectionTooLargeMessage(strconv.Itoa(len(plans)), strconv.Itoa(len(targets)), strconv.Itoa(size>>10)))
		return r
	}
	warnIdentityOverlap(pod, targets, names, layers, &r)

	out := appendableCopy(pod)
	a := applier{result: &r, served: map[string]bool{}, keys: in.Keys, namespace: namespace}
	// The keys of an envFrom Secret are looked up only where the namespace owner lets flow runs
	// have that Secret: a review that did not come from the API server must not learn, through
	// what flowauth says it kept, the keys of a Secret it could not be given.
	switch {
	case list != nil:
		a.envFromAllowed = func(secret string) bool { return list.allowsSecret(secret, in.Map) }
	case in.RequireAllowList:
		a.envFromAllowed = func(string) bool { return false }
	}
	a.checkVolumes(out, plans)
	for _, t := range targets {
		a.addToContainer(t.get(out), plans)
	}
	a.addUsedVolumes(out, plans)
	a.warnEnvFromUnchecked()
	a.warnEnvFromNotAllowed(list)
	for _, p := range plans {
		if a.served[p.name] {
			r.Injected = append(r.Injected, p.name)
		}
	}

	r.Status = status(r.Injected, targets, skipped, out, &a, layers)
	a.changed = setAnnotation(out, AnnotationStatus, r.Status) || a.changed
	if _, recorded := out.Annotations[AnnotationOriginalContainers]; !recorded {
		a.changed = setAnnotation(out, AnnotationOriginalContainers, strings.Join(regularContainers(pod), ",")) || a.changed
	}
	if a.changed {
		r.Pod, r.Changed = out, true
	}
	return r
}

func secretsOf(plans []plan) []string {
	var secrets []string
	for _, p := range plans {
		if s := "Secret " + strconv.Quote(p.secret); !slices.Contains(secrets, s) {
			secrets = append(secrets, s)
		}
	}
	return secrets
}

// optOut leaves a pod with flowauth.io/inject: "false" as it came but for its status.
func optOut(pod *corev1.Pod) Result {
	r := Result{FlowRun: true, OptedOut: true, Status: StatusOptedOut}
	if pod.Annotations[AnnotationStatus] != r.Status {
		out := *pod
		out.Annotations = maps.Clone(pod.Annotations)
		out.Annotations[AnnotationStatus] = r.Status
		r.Pod, r.Changed = &out, true
	}
	return r
}

// setAnnotation sets an annotation of flowauth's own and reports whether it changed.
func setAnnotation(pod *corev1.Pod, key, value string) bool {
	if v, ok := pod.Annotations[key]; ok && v == value {
		return false
	}
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[key] = value
	return true
}

func regularContainers(pod *corev1.Pod) []string {
	names := make([]string, len(pod.Spec.Containers))
	for i, c := range pod.Spec.Containers {
		names[i] = c.Name
	}
	return names
}

// appendableCopy copies what Pod writes and shares the rest with pod: the annotations, the
// container lists, each container's env and mounts, and the volumes are the copy's own, clipped so
// that an append reallocates rather than writes into the input's spare capacity. Nothing else is
// written by either side. A deep copy was 8% of a flow-run admission under load.
func appendableCopy(pod *corev1.Pod) *corev1.Pod {
	out := *pod
	out.Annotations = maps.Clone(pod.Annotations)
	out.Spec.InitContainers = appendableContainers(pod.Spec.InitContainers)
	out.Spec.Containers = appendableContainers(pod.Spec.Containers)
	out.Spec.Volumes = slices.Clip(pod.Spec.Volumes)
	return &out
}

func appendableContainers(containers []corev1.Container) []corev1.Container {
	out := slices.Clone(containers)
	for i := range out {
		out[i].Env = slices.Clip(out[i].Env)
		out[i].VolumeMounts = slices.Clip(out[i].VolumeMounts)
	}
	return out
}

func secretName(e secretmap.Entry, overrides map[string]string) string {
	if s, ok := overrides[e.Name]; ok {
		return s
	}
	return e.SecretName
}

func parseLayers(annotations map[string]string, r *Result) Layers {
	v, ok := annotations[AnnotationInject]
	if !ok {
		return LayersBoth
	}
	switch l := Layers(strings.TrimSpace(v)); l {
	case LayersPrefect, LayersNative, LayersBoth:
		return l
	case InjectTrue:
		return LayersBoth
	}
	r.deny(ReasonInvalidInjectMode, "annotation %s: value %s is not one of prefect, native, both, true, false", AnnotationInject, quote(v))
	return LayersBoth
}

// parseOverrides reads secret.flowauth.io/<NAME> annotations for the declared names. Overrides of
// names not declared are only counted, and the first few (in order) named in one warning: a pod
// may carry tens of thousands of them.
func parseOverrides(annotations map[string]string, names []string, r *Result) map[string]string {
	var keys, undeclared []string
	more := 0
	for k := range annotations {
		name, ok := strings.CutPrefix(k, SecretOverridePrefix)
		switch {
		case !ok:
		case slices.Contains(names, name):
			keys = append(keys, k)
		default:
			// Keep the maxListedInMessage smallest, sorted, so the warning is the same every time.
			i, _ := slices.BinarySearch(undeclared, name)
			if i < maxListedInMessage {
				undeclared = slices.Insert(undeclared, i, name)
			}
			if len(undeclared) > maxListedInMessage {
				undeclared = undeclared[:maxListedInMessage]
				more++
			} else if i >= maxListedInMessage {
				more++
			}
		}
	}
	sort.Strings(keys)
	overrides := make(map[string]string, len(keys))
	for _, k := range keys {
		name, value := strings.TrimPrefix(k, SecretOverridePrefix), annotations[k]
		if msgs := invalidSubdomain(value); len(msgs) > 0 {
			r.deny(ReasonInvalidSecretOverride, "annotation %s: value %s is not a valid Secret name: %s", k, quote(value), strings.Join(msgs, "; "))
			continue
		}
		overrides[name] = value
	}
	switch {
	case len(undeclared) == 1:
		r.warn(ReasonUndeclaredOverride, "annotation %s: %s is not declared in %s (nor in the namespace defaults); the override is ignored",
			quote(SecretOverridePrefix+undeclared[0]), quote(undeclared[0]), AnnotationSecrets)
	case len(undeclared) > 1:
		// One warning, however many there are.
		list := strings.Join(quoteEach(undeclared), ", ")
		if more > 0 {
			list += fmt.Sprintf(" and %d more", more)
		}
		r.warn(ReasonUndeclaredOverride, "annotations %s<NAME>: %s are not declared in %s (nor in the namespace defaults); the overrides are ignored",
			SecretOverridePrefix, list, AnnotationSecrets)
	}
	return overrides
}

// target is one container selected for injection.
type target struct {
	init  bool
	index int
	name  string
}

func (t target) get(p *corev1.Pod) *corev1.Container {
	if t.init {
		return &p.Spec.InitContainers[t.index]
	}
	return &p.Spec.Containers[t.index]
}

// selectContainers decides which containers get credentials (DESIGN.md §2, docs/reference.md,
// "Annotations"):
//   - flowauth.io/containers names them (init containers, native sidecars included, only so);
//   - without it, only the container that runs the flow (least privilege): the one named
//     prefect-job (Prefect 2/3 workers' name for it), else the first regular container, as
//     Prefect 1 agents fill containers[0]. Only containers the pod had on flowauth's first pass
//     (flowauth.io/original-containers) and that no skip list names are considered, so a proxy
//     another webhook puts first, or a mesh's proxy, is never taken for the flow;
//   - flowauth.io/skip-containers removes containers from either, and wins over
//     flowauth.io/containers, with a warning where the two name the same container.
//
// It returns the targets and, for the status, the regular containers left out.
func selectContainers(pod *corev1.Pod, skip []string, r *Result) (targets []target, skipped []string) {
	podSkip, _ := containerList(pod.Annotations, AnnotationSkipContainers, ReasonInvalidContainerName, "skip none", r)
	names, named := containerList(pod.Annotations, AnnotationContainers, ReasonNoTargetContainer, "inject into the flow's container only", r)
	if !named {
		return flowContainer(pod, podSkip, skip, r)
	}
	if r.Denied() {
		return nil, nil
	}
	var missing []string
	for _, name := range names {
		if slices.Contains(podSkip, name) {
			r.warn(ReasonContainersContradict, "container %q is named in both %s and %s; it is skipped", name, AnnotationContainers, AnnotationSkipContainers)
			skipped = append(skipped, name)
			continue
		}
		found := false
		for i, c := range pod.Spec.InitContainers {
			if c.Name == name {
				targets, found = append(targets, target{init: true, index: i, name: name}), true
			}
		}
		for i, c := range pod.Spec.Containers {
			if c.Name == name {
				targets, found = append(targets, target{index: i, name: name}), true
			}
		}
		if !found {
			missing = append(missing, name)
		}
	}
	if len(targets) == 0 {
		left := ""
		if len(podSkip) > 0 {
			left = " or left after " + AnnotationSkipContainers
		}
		r.deny(ReasonNoTargetContainer, "annotation %s: none of the named containers (%s) is in the pod (it has: %s)%s; the declared secrets would reach no container",
			AnnotationContainers, some(names), containerNames(pod), left)
		return nil, nil
	}
	if len(missing) > 0 {
		// One warning for all of them, listing the pod's containers once.
		what := fmt.Sprintf("container %q is", missing[0])
		if len(missing) > 1 {
			what = fmt.Sprintf("containers %s are", some(quoteEach(missing)))
		}
		r.warn(ReasonContainerNotFound, "annotation %s: %s not in the pod (it has: %s); nothing is injected there", AnnotationContainers, what, containerNames(pod))
	}
	return targets, skipped
}

// flowContainer is selectContainers' default: the one container that runs the flow. The other
// regular containers are returned as skipped, and those that no skip list names (a log shipper,
// a metrics agent) are told of in one warning that says how to give them credentials.
func flowContainer(pod *corev1.Pod, podSkip, skip []string, r *Result) (targets []target, skipped []string) {
	original, recorded := pod.Annotations[AnnotationOriginalContainers]
	firstPass, _ := splitList(original)
	flow := -1
	var candidates []int
	for i, c := range pod.Spec.Containers {
		if slices.Contains(podSkip, c.Name) || slices.Contains(skip, c.Name) || (recorded && !slices.Contains(firstPass, c.Name)) {
			continue
		}
		candidates = append(candidates, i)
		if c.Name == FlowContainerName && flow < 0 {
			flow = i
		}
	}
	if flow < 0 && len(candidates) > 0 {
		flow = candidates[0]
	}
	var leftOut []string
	for i, c := range pod.Spec.Containers {
		if i == flow {
			targets = append(targets, target{index: i, name: c.Name})
			continue
		}
		skipped = append(skipped, c.Name)
		if slices.Contains(candidates, i) {
			leftOut = append(leftOut, c.Name)
		}
	}
	if r.Denied() {
		return nil, nil
	}
	if flow < 0 {
		if len(pod.Spec.Containers) > 0 {
			r.warn(ReasonAllContainersSkipped, "every container of the pod (%s) is skipped (%s, %s, or added after flowauth's first pass); nothing is injected: name the flow's container in %s",
				some(skipped), AnnotationSkipContainers, "the webhook's --skip-containers", AnnotationContainers)
		}
		return nil, skipped
	}
	if len(leftOut) > 0 {
		flowName := pod.Spec.Containers[flow].Name
		what, them := fmt.Sprintf("container %q gets", leftOut[0]), "it"
		if len(leftOut) > 1 {
			what, them = "containers "+some(quoteEach(leftOut))+" get", "them"
		}
		r.warn(ReasonOtherContainersLeftOut, "only container %q, which runs the flow, gets the credentials; %s nothing. To give %s credentials too, set %s: %s",
			flowName, what, them, AnnotationContainers, strings.Join(append([]string{flowName}, leftOut[:min(len(leftOut), maxListedInMessage)]...), ","))
	}
	return targets, skipped
}

// containerList reads an annotation that lists container names (flowauth.io/containers,
// flowauth.io/skip-containers): nil and false when it is absent; a denial for each invalid
// name, one (with reason) when it lists none, saying to remove it to get what absence means, and
// one when it lists more than MaxListedContainers.
func containerList(annotations map[string]string, key string, reason Reason, absence string, r *Result) (names []string, present bool) {
	value, ok := annotations[key]
	if !ok {
		return nil, false
	}
	items, total := splitList(value)
	switch {
	case total > MaxListedContainers:
		r.deny(ReasonTooManyContainers, "annotation %s lists more than %d containers, which is the most allowed", key, MaxListedContainers)
		return nil, true
	case len(items) == 0:
		r.deny(reason, "annotation %s lists no container; remove it to %s", key, absence)
	}
	var invalid []string
	for _, name := range items {
		if msgs := invalidLabel(name); len(msgs) > 0 {
			if len(invalid) == 0 {
				r.deny(ReasonInvalidContainerName, "annotation %s: entry %s is not a valid container name: %s", key, quote(name), strings.Join(msgs, "; "))
			}
			invalid = append(invalid, name)
			continue
		}
		names = append(names, name)
	}
	if len(invalid) > 1 {
		r.deny(ReasonInvalidContainerName, "annotation %s: %d more entries are not valid container names", key, len(invalid)-1)
	}
	return names, true
}

func quoteEach(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = quote(n)
	}
	return out
}

func containerNames(pod *corev1.Pod) string {
	names := make([]string, 0, len(pod.Spec.InitContainers)+len(pod.Spec.Containers))
	for _, c := range pod.Spec.InitContainers {
		names = append(names, c.Name+" (init)")
	}
	for _, c := range pod.Spec.Containers {
		names = append(names, c.Name)
	}
	if len(names) == 0 {
		return "no containers"
	}
	return some(names)
}

// InjectionTooLargeMessage is the InjectionTooLarge refusal, its figures given as text: pkg/policy
// writes CEL expressions in their place, so both say it in the same words.
func InjectionTooLargeMessage(names, containers, kib string) string {
	return fmt.Sprintf("injecting %s names into %s containers would take a patch of about %s KiB; at most %d KiB is allowed: declare fewer names in %s or name fewer containers in %s",
		names, containers, kib, MaxPatchBytes>>10, AnnotationSecrets, AnnotationContainers)
}
