package policy

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/flowauth/flowauth/pkg/secretmap"
)

// ChartTemplatePath is where ChartTemplate's output lives in the repository.
const ChartTemplatePath = "charts/flowauth/templates/admissionpolicies.yaml"

// The chart cannot compile a policy (Helm has no CEL and no secret map), so the policies are
// compiled here for the built-in map, once, and written as a Helm template in which only what
// the chart's values change is left to Helm: the objects' names and labels, the namespaces
// served, and the three settings, each of which is a single CEL variable holding a literal.
// test/chart checks that the chart renders what Compile gives for the same settings.
var settingTemplates = map[string]string{
	SettingSkipContainers:    `{{ .Values.skipContainers | toJson | quote }}`,
	SettingRequireAllowList:  `{{ .Values.policy.requireAllowList | toString | quote }}`,
	SettingNamespaceDefaults: `{{ .Values.namespaceDefaults | toString | quote }}`,
}

const (
	nameSentinel     = "flowauthchartfullname"
	selectorSentinel = "flowauth-chart-namespace-selector"
)

var selectorLines = regexp.MustCompile(`(?m)^( *)matchLabels:\n *` + selectorSentinel + `: x\n`)

// ChartTemplate is the chart's template of the policies (ChartTemplatePath).
func ChartTemplate() ([]byte, error) {
	p, err := Compile(secretmap.Builtin(), Options{
		Name:               nameSentinel,
		NamespaceSelector:  &metav1.LabelSelector{MatchLabels: map[string]string{selectorSentinel: "x"}},
		ExcludedNamespaces: []string{},
	})
	if err != nil {
		return nil, err
	}
	for _, vars := range [][]admissionregistrationv1.Variable{p.Mutating.Spec.Variables, p.Validating.Spec.Variables, p.ValidatingJobs.Spec.Variables} {
		for i := range vars {
			if _, ok := settingTemplates[vars[i].Name]; ok {
				vars[i].Expression = "flowauth-setting-" + vars[i].Name
			}
		}
	}
	// The bindings' selector is the chart's (flowauth.namespaceSelector: the values' selector,
	// never the release namespace nor kube-system).
	for _, b := range []*admissionregistrationv1.MatchResources{p.MutatingBinding.Spec.MatchResources, p.ValidatingBinding.Spec.MatchResources, p.ValidatingJobsBinding.Spec.MatchResources} {
		b.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{selectorSentinel: "x"}}
	}
	var out bytes.Buffer
	out.WriteString(`{{- /*
Generated from pkg/policy (make update-golden): edit pkg/policy, not this file. flowauth compiled
into admission policies that the API server runs itself (Kubernetes 1.36+), for the built-in
secret map: admission.mode policy (and both, while switching). docs/reference.md, "Policy mode: no webhook in the pod's path".
*/}}
{{- if ne (include "flowauth.admissionMode" .) "webhook" }}
{{- $fullname := include "flowauth.fullname" . }}
`)
	for i, obj := range p.Objects() {
		b, err := yaml.Marshal(obj)
		if err != nil {
			return nil, err
		}
		// An object's empty status is the API server's to fill.
		text := strings.TrimSuffix(string(b), "status: {}\n")
		if strings.Contains(text, "{{") {
			return nil, fmt.Errorf("the policies' text holds {{, which Helm would read as an action")
		}
		for name, tmpl := range settingTemplates {
			text = strings.ReplaceAll(text, "expression: flowauth-setting-"+name+"\n", "expression: "+tmpl+"\n")
		}
		text = strings.ReplaceAll(text, nameSentinel, "{{ $fullname }}")
		text = strings.Replace(text, "  labels:\n    app.kubernetes.io/name: flowauth\n", "  labels:\n    {{- include \"flowauth.labels\" . | nindent 4 }}\n", 1)
		text = selectorLines.ReplaceAllString(text, "$1{{- include \"flowauth.namespaceSelector\" . | nindent ${1}XX }}\n")
		if strings.Contains(text, "flowauth-setting-") || strings.Contains(text, selectorSentinel) || strings.Contains(text, nameSentinel) {
			return nil, fmt.Errorf("a setting of %T was left unreplaced", obj)
		}
		if i > 0 {
			out.WriteString("---\n")
		}
		out.WriteString(text)
	}
	out.WriteString("{{- end }}\n")
	return fixIndent(out.Bytes()), nil
}

var nindentMarker = regexp.MustCompile(`nindent ( *)XX`)

// fixIndent turns the selector's "nindent <spaces>XX" into the count of those spaces.
func fixIndent(b []byte) []byte {
	return nindentMarker.ReplaceAllFunc(b, func(m []byte) []byte {
		return []byte(fmt.Sprintf("nindent %d", len(nindentMarker.FindSubmatch(m)[1])))
	})
}
