package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/flowauth/flowauth/pkg/mutate"
	"github.com/flowauth/flowauth/pkg/policy"
	"github.com/flowauth/flowauth/pkg/secretmap"
)

// installedPolicies are flowauth's admission policies on the cluster (admission.mode policy or
// both, or kubectl flowauth policy's output), as doctor finds them.
type installedPolicies struct {
	inject  *admissionregistrationv1.MutatingAdmissionPolicy
	binding *admissionregistrationv1.MutatingAdmissionPolicyBinding
}

// setting is the literal a policy holds for one of pkg/policy's settings ("" if it has none).
func (p *installedPolicies) setting(name string) string {
	for _, v := range p.inject.Spec.Variables {
		if v.Name == name {
			return v.Expression
		}
	}
	return ""
}

// requireAllowList and skipContainers are the settings the policies were compiled with.
func (p *installedPolicies) requireAllowList() bool {
	return p.setting(policy.SettingRequireAllowList) == "true"
}

func (p *installedPolicies) skipContainers() []string {
	var skip []string
	if err := json.Unmarshal([]byte(p.setting(policy.SettingSkipContainers)), &skip); err != nil {
		return nil
	}
	return skip
}

// findPolicies reads flowauth's policies, named after the release; nil when there are none (or
// the API server serves no MutatingAdmissionPolicy v1: a cluster older than 1.36).
func (d *doctor) findPolicies(ctx context.Context) *installedPolicies {
	var inject admissionregistrationv1.MutatingAdmissionPolicy
	if err := d.c.Get(ctx, types.NamespacedName{Name: fullname(d.release) + "-inject"}, &inject); err != nil {
		return nil
	}
	p := &installedPolicies{inject: &inject}
	var binding admissionregistrationv1.MutatingAdmissionPolicyBinding
	if err := d.c.Get(ctx, types.NamespacedName{Name: fullname(d.release) + "-inject"}, &binding); err == nil && binding.Spec.PolicyName == inject.Name {
		p.binding = &binding
	}
	return p
}

// policies checks flowauth's admission policies: each exists and is bound, fails closed, and holds
// the secret map this plugin holds. It returns the injecting binding's namespace selector.
func (d *doctor) policies(ctx context.Context, p *installedPolicies) *metav1.LabelSelector {
	before := d.failed
	apply := fmt.Sprintf("helm upgrade %s CHART -n %s --reuse-values --set admission.mode=policy (or: kubectl flowauth policy --name %s | kubectl apply --server-side -f -)", d.release, d.relNS, d.release)
	if p.binding == nil {
		d.report(fail, fmt.Sprintf("MutatingAdmissionPolicy %s has no MutatingAdmissionPolicyBinding %s: the API server never runs it, and flow runs start without their credentials", p.inject.Name, p.inject.Name), apply)
	} else if p.binding.Spec.MatchResources == nil || p.binding.Spec.MatchResources.NamespaceSelector == nil {
		d.report(fail, fmt.Sprintf("MutatingAdmissionPolicyBinding %s selects no namespaces", p.binding.Name), apply)
	}
	refuse := fullname(d.release) + "-refuse"
	var vap admissionregistrationv1.ValidatingAdmissionPolicy
	var vapb admissionregistrationv1.ValidatingAdmissionPolicyBinding
	switch {
	case d.c.Get(ctx, types.NamespacedName{Name: refuse}, &vap) != nil:
		d.report(fail, fmt.Sprintf("no ValidatingAdmissionPolicy %s: what flowauth refuses (names an allow-list refuses, bad annotations) is let through, uninjected", refuse), apply)
	case d.c.Get(ctx, types.NamespacedName{Name: refuse}, &vapb) != nil || vapb.Spec.PolicyName != refuse || !slices.Contains(vapb.Spec.ValidationActions, admissionregistrationv1.Deny):
		d.report(fail, fmt.Sprintf("ValidatingAdmissionPolicy %s has no binding that denies (ValidatingAdmissionPolicyBinding %s, validationActions [Deny]): what flowauth refuses is let through", refuse, refuse), apply)
	}
	if fp := p.inject.Spec.FailurePolicy; fp != nil && *fp == admissionregistrationv1.Ignore {
		d.report(warn, fmt.Sprintf("MutatingAdmissionPolicy %s: failurePolicy Ignore: a flow run whose injection errs starts without its credentials", p.inject.Name), apply)
	}
	// The map is compiled in: a policy from another flowauth version, or for a custom map, injects
	// what that map says. Compare it with the built-in map's, as this plugin compiles it.
	want, err := policy.Compile(secretmap.Builtin(), policy.Options{})
	if err == nil {
		mine := ""
		for _, v := range want.Mutating.Spec.Variables {
			if v.Name == policy.MapVariable {
				mine = v.Expression
			}
		}
		theirs := ""
		for _, v := range p.inject.Spec.Variables {
			if v.Name == policy.MapVariable {
				theirs = v.Expression
			}
		}
		if theirs != mine {
			d.report(warn, fmt.Sprintf("MutatingAdmissionPolicy %s holds another secret map than this plugin's built-in one (a custom map, or another flowauth version): render and explain here answer for the built-in map", p.inject.Name),
				"if it is not your custom map, re-apply the policies of this version: "+apply)
		}
	}
	if p.binding == nil || d.failed > before {
		return nil
	}
	d.report(pass, fmt.Sprintf("admission policies %s (bound, failurePolicy Fail) and %s (Deny): the API server injects flow runs itself", p.inject.Name, refuse), "")
	return p.binding.Spec.MatchResources.NamespaceSelector
}

// policyAllowList is namespacePolicy's allow-list check for the policies: with requireAllowList
// compiled in, a namespace without a list has every flow run refused.
func (d *doctor) policyAllowList(ctx context.Context, p *installedPolicies) {
	var ns corev1.Namespace
	if err := d.c.Get(ctx, types.NamespacedName{Name: d.namespace}, &ns); err != nil {
		return
	}
	list, has := ns.Annotations[mutate.AnnotationAllowedSecrets]
	switch {
	case has:
		d.report(pass, fmt.Sprintf("namespace %s allows: %s", d.namespace, list), "")
	case p.requireAllowList():
		d.report(fail, fmt.Sprintf("namespace %s has no %s annotation and the policies require one (requireAllowList): every flow run there is refused", d.namespace, mutate.AnnotationAllowedSecrets),
			fmt.Sprintf("kubectl annotate namespace %s %s='AWS_CREDENTIALS, GITHUB_ACCESS_TOKEN' (the names its flow runs may receive)", d.namespace, mutate.AnnotationAllowedSecrets))
	}
}
