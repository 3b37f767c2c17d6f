package policy

import (
	"strconv"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"

	"github.com/flowauth/flowauth/pkg/mutate"
	"github.com/flowauth/flowauth/pkg/secretmap"
)

// The ValidatingAdmissionPolicy refuses what pkg/mutate.Pod refuses, with its messages, in its
// order: the pod's size first (each alone), then its names, layers, container lists and
// overrides, all of them. It sees the pod after the mutating policy, as the API server stores it.

// The validators' messages, taken from the validators themselves (pkg/mutate prints them): a
// label's and a subdomain's from k8s.io/apimachinery, a secret name's from secretmap.ValidateName.
var (
	labelRegexMessage     = validation.IsDNS1123Label("-")[0]
	subdomainRegexMessage = validation.IsDNS1123Subdomain("-")[0]
	nameShapeMessage      = secretmap.ValidateName("a").Error()
	nameDoubleMessage     = secretmap.ValidateName("A__B").Error()
	nameTrailingMessage   = secretmap.ValidateName("A_").Error()
)

// quote is pkg/mutate's quote: at most 80 characters, then "...".
func quote(s string) string {
	return "(" + s + ".size() > 80 ? strings.quote(" + s + ".substring(0, 80)) + '...' : strings.quote(" + s + "))"
}

// some is pkg/mutate's some: at most ten, then how many more.
func some(list string) string {
	strs := list + ".map(x, string(x))"
	return "(" + list + ".size() <= 10 ? " + strs + ".join(', ') : " + strs + ".slice(0, 10).join(', ') + ' and ' + string(" + list + ".size() - 10) + ' more')"
}

// nameProblem is secretmap.ValidateName's message for an invalid n.
func nameProblem(n string) string {
	return "(" + n + ".size() > " + maxName + " ? 'is ' + string(" + n + ".size()) + ' characters long; at most " + maxName + " are allowed' : !" + n + ".matches('^[A-Z][A-Z0-9_]*$') ? " +
		celString(nameShapeMessage) + " : " + n + ".contains('__') ? " + celString(nameDoubleMessage) + " : " + celString(nameTrailingMessage) + ")"
}

// validLabelN says whether n is a DNS label (a container name).
var validLabelN = "(n.size() <= " + strconv.Itoa(validation.DNS1123LabelMaxLength) + " && n.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'))"

func labelProblem(n string) string {
	return "(" + n + ".size() > " + strconv.Itoa(validation.DNS1123LabelMaxLength) + " ? 'must be no more than " + strconv.Itoa(validation.DNS1123LabelMaxLength) + " characters' : " + celString(labelRegexMessage) + ")"
}

func validSubdomain(n string) string {
	return "(" + n + `.size() <= ` + strconv.Itoa(validation.DNS1123SubdomainMaxLength) + ` && ` + n + `.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'))`
}

func subdomainProblem(n string) string {
	return "(" + n + ".size() > " + strconv.Itoa(validation.DNS1123SubdomainMaxLength) + " ? 'must be no more than " + strconv.Itoa(validation.DNS1123SubdomainMaxLength) + " characters' : " + celString(subdomainRegexMessage) + ")"
}

// containerListDenials is containerList's refusals for annotation key (absence: what leaving it
// out means).
func containerListDenials(key, list, absence string) string {
	all := "variables." + list + "List"
	return `!('` + key + `' in variables.ann) ? [] : variables.` + list + `Over ? ['annotation ` + key + ` lists more than ` + maxListed + ` containers, which is the most allowed'] :
  (` + all + `.size() == 0 ? [` + celString("annotation "+key+" lists no container; remove it to "+absence) + `] : []) +
  (` + all + `.exists(n, !` + validLabelN + `) ? ['annotation ` + key + `: entry ' + ` + quote(all+`.filter(n, !`+validLabelN+`)[0]`) +
		` + ' is not a valid container name: ' + ` + labelProblem(all+`.filter(n, !`+validLabelN+`)[0]`) + `] : []) +
  (` + all + `.filter(n, !` + validLabelN + `).size() > 1 ? ['annotation ` + key + `: ' + string(` + all + `.filter(n, !` + validLabelN + `).size() - 1) + ' more entries are not valid container names'] : [])`
}

func refuseVariables(m *secretmap.Map, o Options) []admissionregistrationv1.Variable {
	containersOf := `(object.spec.?initContainers.orValue([]) + object.spec.containers)`
	return append(prelude(m, o), []admissionregistrationv1.Variable{
		v("optedOut", `variables.ann[?'flowauth.io/inject'].orValue('').trim() == 'false'`),
		v("names", `variables.SecretsList`),
		v("inject", `variables.ann[?'flowauth.io/inject'].orValue('both').trim()`),
		v("containerNames", `object.spec.?initContainers.orValue([]).map(c, c.name + ' (init)') + object.spec.containers.map(c, c.name)`),
		v("podSkip", `variables.SkipList.filter(n, `+validLabelN+`)`),
		v("namedList", `variables.ContainersList.filter(n, `+validLabelN+`)`),
		// The pod's size, each checked alone and first, as Pod does. This policy sees the pod
		// after the mutating one: a pod that carries flowauth's status was within the bounds when
		// that policy planned it (it injects nothing otherwise), and the variables and volumes it
		// added may take it past them.
		v("sizeDenials", `'flowauth.io/status' in variables.ann ? [] : (object.spec.?initContainers.orValue([]).size() + object.spec.containers.size() > `+maxContainers+`) ?
  ['the pod has more than `+maxContainers+` containers (init containers included), which is the most flowauth serves in a flow-run pod'] :
  object.spec.?volumes.orValue([]).size() > `+maxVolumes+` ? ['the pod has more than `+maxVolumes+` volumes, which is the most flowauth serves in a flow-run pod'] :
  `+containersOf+`.exists(c, c.?env.orValue([]).size() > `+maxEnv+` || c.?envFrom.orValue([]).size() > `+maxEnvFrom+` || c.?volumeMounts.orValue([]).size() > `+maxVolumeMounts+`) ?
  [`+containersOf+`.filter(c, c.?env.orValue([]).size() > `+maxEnv+` || c.?envFrom.orValue([]).size() > `+maxEnvFrom+` || c.?volumeMounts.orValue([]).size() > `+maxVolumeMounts+`).map(c,
    'container ' + strings.quote(c.name) + ' has more than ' + (c.?env.orValue([]).size() > `+maxEnv+` ? '`+maxEnv+` env vars' : c.?envFrom.orValue([]).size() > `+maxEnvFrom+` ? '`+maxEnvFrom+` envFrom sources' : '`+maxVolumeMounts+` volume mounts') +
    ', which is the most flowauth serves in a flow-run pod')[0]] : []`),
		v("nameDenials", `variables.SecretsOver ? ['annotation flowauth.io/secrets declares more than `+maxNames+` names, which is the most allowed'] :
  variables.names.filter(n, !`+validName("n")+`).map(n, 'annotation flowauth.io/secrets: entry ' + `+quote("n")+` + ' is not a valid secret name: it ' + `+nameProblem("n")+`)`),
		v("injectDenials", `variables.inject in ['prefect', 'native', 'both', 'true'] ? [] :
  ['annotation flowauth.io/inject: value ' + `+quote(`variables.ann['flowauth.io/inject']`)+` + ' is not one of prefect, native, both, true, false']`),
		v("skipDenials", containerListDenials("flowauth.io/skip-containers", "Skip", "skip none")),
		v("containersDenials", containerListDenials("flowauth.io/containers", "Containers", "inject into the flow's container only")),
		v("notFound", `!('flowauth.io/containers' in variables.ann) || variables.namedList.size() == 0 || variables.containersDenials.size() > 0 ? [] :
  variables.namedList.filter(n, !(n in variables.podSkip) && `+containersOf+`.exists(c, c.name == n)).size() > 0 ? [] :
  ['annotation flowauth.io/containers: none of the named containers (' + `+some("variables.namedList")+` + ') is in the pod (it has: ' +
   (variables.containerNames.size() == 0 ? 'no containers' : `+some("variables.containerNames")+`) + ')' +
   (variables.podSkip.size() > 0 ? ' or left after flowauth.io/skip-containers' : '') + '; the declared secrets would reach no container']`),
		v("overrideDenials", `variables.ann.filter(k, k.startsWith('secret.flowauth.io/') && k.substring(19) in variables.names).sort()
  .filter(k, !`+validSubdomain("variables.ann[k]")+`)
  .map(k, 'annotation ' + k + ': value ' + `+quote("variables.ann[k]")+` + ' is not a valid Secret name: ' + `+subdomainProblem("variables.ann[k]")+`)`),
		// enforceAllowList, once nothing else refused the pod: each name the pod asks for (declared
		// or overridden) that the list does not allow; with no list where one is required, the first.
		v("nsNames", `(`+split(`variables.nsDefaults`)+`).size() > `+maxNames+` ? [] : (`+split(`variables.nsDefaults`)+`).filter(n, `+validName("n")+`)`),
		v("allNames", `variables.names + variables.nsNames.filter(n, !(n in variables.names))`),
		v("fromPod", `variables.allNames.filter(n, n in variables.names || ('secret.flowauth.io/' + n) in variables.ann)`),
		v("nsName", `namespaceObject.metadata.name`),
		v("allowDenials", `variables.listKey == '' ? (variables.requireList && variables.fromPod.size() > 0 ?
  ['namespace ' + strings.quote(variables.nsName) + ' has no flowauth.io/allowed-secrets annotation, and this cluster\'s flowauth requires one (--require-allow-list): nothing may be injected there until a namespace administrator sets it, e.g. kubectl annotate namespace ' +
   variables.nsName + ' flowauth.io/allowed-secrets=' + variables.fromPod[0]] : []) :
  variables.fromPod.filter(n, !`+allowed("n")+`).map(n, 'namespace ' + strings.quote(variables.nsName) + ' does not allow ' + n + ' ' +
    (('secret.flowauth.io/' + n) in variables.ann ? 'from Secret ' + strings.quote(`+secretOf("n")+`) + ' (annotation secret.flowauth.io/' + n + ')' :
     'from its default Secret ' + strings.quote(`+secretOf("n")+`)) +
    ': its annotation ' + variables.listKey + ' allows ' + variables.listDescribed + '. A namespace administrator decides what flow runs there may receive')`),
		// patchEstimate's refusal: the mutating policy, which plans the injection, records the
		// figures on the pod instead of injecting (a pod's creator who writes them refuses only
		// their own pod).
		v("tooLargeDenials", `variables.ann[?'flowauth.io/injection-too-large'].orValue('').matches('^[0-9]{1,4},[0-9]{1,4},[0-9]{1,9}$') ?
  [variables.ann['flowauth.io/injection-too-large'].split(',').map(f, f)].map(f, '`+mutate.InjectionTooLargeMessage("' + f[0] + '", "' + f[1] + '", "' + f[2] + '")+`') : []`),
		v("denials", `!variables.flowRun || variables.optedOut ? [] : variables.sizeDenials.size() > 0 ? variables.sizeDenials :
  (variables.nameDenials + variables.injectDenials + variables.skipDenials + variables.containersDenials + variables.notFound + variables.overrideDenials).size() > 0 ?
  variables.nameDenials + variables.injectDenials + variables.skipDenials + variables.containersDenials + variables.notFound + variables.overrideDenials :
  variables.allowDenials.size() > 0 ? variables.allowDenials : variables.tooLargeDenials`),
	}...)
}

func refusePolicy(m *secretmap.Map, o Options, selector *metav1.LabelSelector) (*admissionregistrationv1.ValidatingAdmissionPolicy, *admissionregistrationv1.ValidatingAdmissionPolicyBinding) {
	p := &admissionregistrationv1.ValidatingAdmissionPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingAdmissionPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: o.Name + "-refuse", Labels: map[string]string{"app.kubernetes.io/name": "flowauth"}},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			MatchConstraints: podCreates(),
			MatchConditions:  []admissionregistrationv1.MatchCondition{{Name: "flow-run-pods-only", Expression: flowRunPods}},
			FailurePolicy:    ptr.To(admissionregistrationv1.Fail),
			Variables:        refuseVariables(m, o),
			Validations: []admissionregistrationv1.Validation{{
				Expression:        `variables.denials.size() == 0`,
				MessageExpression: `'flowauth: ' + variables.denials.join('; ')`,
				Reason:            ptr.To(metav1.StatusReasonForbidden),
			}},
		},
	}
	return p, denyBinding(p, selector)
}

// jobTemplate is where a Job keeps the pod it will create.
const jobTemplate = "object.spec.template"

// refuseJobsPolicy refuses a Job whose pod template the pod policy would refuse, with the same
// message, as the webhook's jobs.flowauth.io does: a Prefect worker then ends the flow run
// Crashed with the message at once, instead of waiting on a Job whose pods are never created (it
// reads no Job Events). The pod policy's CEL is read from the template: a Job's template has the
// pod's metadata and spec.
func refuseJobsPolicy(pods *admissionregistrationv1.ValidatingAdmissionPolicy, selector *metav1.LabelSelector) (*admissionregistrationv1.ValidatingAdmissionPolicy, *admissionregistrationv1.ValidatingAdmissionPolicyBinding) {
	fromTemplate := func(expr string) string { return strings.ReplaceAll(expr, "object.", jobTemplate+".") }
	p := pods.DeepCopy()
	p.Name = pods.Name + "-jobs"
	p.Spec.MatchConstraints = &admissionregistrationv1.MatchResources{
		ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
			RuleWithOperations: admissionregistrationv1.RuleWithOperations{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule: admissionregistrationv1.Rule{
					APIGroups: []string{"batch"}, APIVersions: []string{"v1"}, Resources: []string{"jobs"},
					Scope: ptr.To(admissionregistrationv1.NamespacedScope),
				},
			},
		}},
	}
	p.Spec.MatchConditions = []admissionregistrationv1.MatchCondition{{Name: "flow-run-templates-only",
		Expression: "has(" + jobTemplate + ".metadata) && (" + fromTemplate(flowRunPods) + ")"}}
	for i := range p.Spec.Variables {
		p.Spec.Variables[i].Expression = fromTemplate(p.Spec.Variables[i].Expression)
	}
	return p, denyBinding(p, selector)
}

// denyBinding binds validating policy p, denying, to the namespaces selector selects.
func denyBinding(p *admissionregistrationv1.ValidatingAdmissionPolicy, selector *metav1.LabelSelector) *admissionregistrationv1.ValidatingAdmissionPolicyBinding {
	return &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingAdmissionPolicyBinding"},
		ObjectMeta: metav1.ObjectMeta{Name: p.Name, Labels: p.Labels},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        p.Name,
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
			MatchResources:    &admissionregistrationv1.MatchResources{NamespaceSelector: selector},
		},
	}
}
