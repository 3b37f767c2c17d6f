// Package policy compiles flowauth's contract into admission policies that the API server runs
// itself (Kubernetes 1.36+, admissionregistration.k8s.io/v1): a MutatingAdmissionPolicy that
// injects what pkg/mutate would, and a ValidatingAdmissionPolicy that refuses what it would, so a
// cluster can run flowauth with no webhook in the pod's path.
//
// The secret map is data here: Compile writes it into the policy as a CEL map literal, and the
// CEL (policy.cel.go) reads a pod exactly as pkg/mutate does, in the same order. pkg/mutate stays
// the contract; test/integration's policy suite runs every golden case of pkg/mutate through a
// real API server with these policies bound and compares the stored pod with the golden one.
package policy

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/flowauth/flowauth/pkg/mutate"
	"github.com/flowauth/flowauth/pkg/secretmap"
)

// Options are the settings that change what is injected or refused, as the chart's values and
// the webhook's flags set them.
type Options struct {
	// Name prefixes every object (the chart's fullname; default "flowauth").
	Name string
	// SkipContainers are never injected unless a pod names them (default mutate.DefaultSkipContainers).
	SkipContainers []string
	// NamespaceSelector selects the namespaces served (default flowauth.io/injection=enabled);
	// ExcludedNamespaces are never served (the release namespace and kube-system).
	NamespaceSelector  *metav1.LabelSelector
	ExcludedNamespaces []string
	// RequireAllowList: nothing is injected in a namespace without an allow-list (the chart's
	// policy.requireAllowList, the webhook's --require-allow-list).
	RequireAllowList bool
	// IgnoreNamespaceDefaults: a Namespace's flowauth.io/secrets is not read (the chart's
	// namespaceDefaults: false, the webhook's --namespace-defaults=false).
	IgnoreNamespaceDefaults bool
}

func (o Options) withDefaults() Options {
	if o.Name == "" {
		o.Name = "flowauth"
	}
	if o.SkipContainers == nil {
		o.SkipContainers = mutate.DefaultSkipContainers
	}
	if o.NamespaceSelector == nil {
		o.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"flowauth.io/injection": "enabled"}}
	}
	if o.ExcludedNamespaces == nil {
		o.ExcludedNamespaces = []string{"flowauth-system", "kube-system"}
	}
	return o
}

// Policies are the objects of a webhookless install.
type Policies struct {
	Mutating          *admissionregistrationv1.MutatingAdmissionPolicy
	MutatingBinding   *admissionregistrationv1.MutatingAdmissionPolicyBinding
	Validating        *admissionregistrationv1.ValidatingAdmissionPolicy
	ValidatingBinding *admissionregistrationv1.ValidatingAdmissionPolicyBinding
	// ValidatingJobs refuses a Job whose pods Validating would refuse.
	ValidatingJobs        *admissionregistrationv1.ValidatingAdmissionPolicy
	ValidatingJobsBinding *admissionregistrationv1.ValidatingAdmissionPolicyBinding
}

// Objects are the policies in the order they are applied.
func (p Policies) Objects() []any {
	return []any{p.Mutating, p.MutatingBinding, p.Validating, p.ValidatingBinding, p.ValidatingJobs, p.ValidatingJobsBinding}
}

// podCreates matches pod creations, as the pod webhook's rules do.
func podCreates() *admissionregistrationv1.MatchResources {
	return &admissionregistrationv1.MatchResources{
		ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
			RuleWithOperations: admissionregistrationv1.RuleWithOperations{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule: admissionregistrationv1.Rule{
					APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"},
					Scope: ptr.To(admissionregistrationv1.NamespacedScope),
				},
			},
		}},
	}
}

// Compile builds the policies for map m.
func Compile(m *secretmap.Map, o Options) (Policies, error) {
	o = o.withDefaults()
	selector := o.NamespaceSelector.DeepCopy()
	selector.MatchExpressions = append(selector.MatchExpressions, metav1.LabelSelectorRequirement{
		Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: o.ExcludedNamespaces,
	})
	inject := &admissionregistrationv1.MutatingAdmissionPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingAdmissionPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: o.Name + "-inject", Labels: map[string]string{"app.kubernetes.io/name": "flowauth"}},
		Spec: admissionregistrationv1.MutatingAdmissionPolicySpec{
			MatchConstraints: podCreates(),
			MatchConditions: []admissionregistrationv1.MatchCondition{
				{Name: "flow-run-pods-only", Expression: flowRunPods},
				{Name: "not-injected-with-these-containers", Expression: notInjectedWithTheseContainers},
			},
			FailurePolicy: ptr.To(admissionregistrationv1.Fail),
			// Another webhook may add a container after this policy ran: run again, as the
			// webhook does (reinvocationPolicy IfNeeded); every mutation is idempotent.
			ReinvocationPolicy: admissionregistrationv1.IfNeededReinvocationPolicy,
			Variables:          variables(m, o),
			Mutations:          mutations(),
		},
	}
	binding := &admissionregistrationv1.MutatingAdmissionPolicyBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingAdmissionPolicyBinding"},
		ObjectMeta: metav1.ObjectMeta{Name: inject.Name, Labels: inject.Labels},
		Spec: admissionregistrationv1.MutatingAdmissionPolicyBindingSpec{
			PolicyName:     inject.Name,
			MatchResources: &admissionregistrationv1.MatchResources{NamespaceSelector: selector},
		},
	}
	refuse, refuseBinding := refusePolicy(m, o, selector)
	jobs, jobsBinding := refuseJobsPolicy(refuse, selector)
	return Policies{Mutating: inject, MutatingBinding: binding, Validating: refuse, ValidatingBinding: refuseBinding,
		ValidatingJobs: jobs, ValidatingJobsBinding: jobsBinding}, nil
}

// celString is s as a CEL string literal (Go's quoting is valid CEL for the ASCII the map holds).
func celString(s string) string { return strconv.Quote(s) }

func celStrings(list []string) string {
	q := make([]string, len(list))
	for i, s := range list {
		q[i] = celString(s)
	}
	return "[" + strings.Join(q, ",") + "]"
}

// secretsLiteral is the secret map's default Secret of each name, as a CEL map: all the
// validating policy and the allow-list need of the map.
func secretsLiteral(m *secretmap.Map) string {
	names := m.Names()
	sort.Strings(names)
	pairs := make([]string, len(names))
	for i, name := range names {
		e, _ := m.Lookup(name)
		pairs[i] = celString(name) + ": " + celString(e.SecretName)
	}
	return "{" + strings.Join(pairs, ", ") + "}"
}

// entryOf writes the secret map as CEL that gives name n's entry: its Secret and what each layer
// adds, in pkg/mutate's order (planFor): the Prefect layer's variables, then the native ones, then
// the variables that name a mounted file; for a name not in the map, a custom name's. It is a
// chain of conditionals, not a map literal, so that only the entries of the names a pod declares
// are built when the policy runs (a literal would build every entry of the map for every pod).
func entryOf(m *secretmap.Map, n string) string {
	names := m.Names()
	sort.Strings(names)
	var b strings.Builder
	for _, name := range names {
		e, _ := m.Lookup(name)
		fmt.Fprintf(&b, "%s == %s ? %s :\n  ", n, celString(name), entryLiteral(e))
	}
	b.WriteString(`{"secret": dyn(` + dash(n) + `), "prefect": dyn([{"name": dyn('PREFECT__CONTEXT__SECRETS__' + ` + n + `),
    "key": dyn('value'), "optional": dyn(false), "value": dyn(''), "file": dyn(false)}]), "native": dyn([]), "files": dyn([]), "filesOptional": dyn(false)}`)
	return b.String()
}

func entryLiteral(e secretmap.Entry) string {
	optional := func(key string) bool { k, _ := e.Key(key); return k.Optional }
	ref := func(env, key string) string {
		return fmt.Sprintf(`{"name": dyn(%s), "key": dyn(%s), "optional": dyn(%t), "value": dyn(""), "file": dyn(false)}`, celString(env), celString(key), optional(key))
	}
	var prefect, native, files []string
	base := secretmap.PrefectEnvPrefix + e.Name
	if e.Shape == secretmap.ShapeDict {
		for _, k := range e.Keys {
			prefect = append(prefect, ref(base+"__"+k.Name, k.Name))
		}
	} else {
		prefect = append(prefect, ref(base, e.Keys[0].Name))
	}
	for _, v := range e.Native.Env {
		native = append(native, ref(v.Name, v.Key))
	}
	allOptional := true
	for _, f := range e.Native.Files {
		if f.Env != "" {
			native = append(native, fmt.Sprintf(`{"name": dyn(%s), "key": dyn(%s), "optional": dyn(false), "value": dyn(%s), "file": dyn(true)}`,
				celString(f.Env), celString(f.Key), celString(secretmap.MountDir(e.Name)+"/"+f.Key)))
		}
		files = append(files, celString(f.Key))
		allOptional = allOptional && optional(f.Key)
	}
	return fmt.Sprintf(`{"secret": dyn(%s), "prefect": dyn([%s]), "native": dyn([%s]), "files": dyn([%s]), "filesOptional": dyn(%t)}`,
		celString(e.SecretName), strings.Join(prefect, ", "), strings.Join(native, ", "), strings.Join(files, ", "), allOptional && len(files) > 0)
}
