package policy

import (
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
)

// The namespace administrator's allow-list (pkg/mutate/policy.go), read as allowListFor reads it:
// the list of the pod's ServiceAccount if the Namespace has one, else the namespace's, else none.
// Both policies use it: the mutating one injects only names it allows, the validating one refuses
// a pod that asks for more, as enforceAllowList does. It needs variables ann, nsAnn and map.

// defaultSecret is the Secret a name comes from without an override (the map's, or a custom
// name's DashName); secretOf is the one it comes from.
func defaultSecret(n string) string {
	return "(" + n + " in variables.secrets ? variables.secrets[" + n + "] : " + dash(n) + ")"
}

func secretOf(n string) string {
	return "variables.ann[?('secret.flowauth.io/' + " + n + ")].orValue(" + defaultSecret(n) + ")"
}

// allowed is allowList.allows for name n (with no list: whether none is required).
func allowed(n string) string {
	return "(variables.listKey == '' ? !variables.requireList : (variables.listAll || variables.listEntries.exists(e, e.name == " + n +
		" && (e.secret == '*' || e.secret == " + secretOf(n) + " || (e.secret == '' && " + secretOf(n) + " == " + defaultSecret(n) + ")))))"
}

func allowListVariables() []admissionregistrationv1.Variable {
	return []admissionregistrationv1.Variable{
		v("saName", `object.spec.?serviceAccountName.orValue('') != '' ? object.spec.serviceAccountName :
  (object.spec.?serviceAccount.orValue('') != '' ? object.spec.serviceAccount : 'default')`),
		v("listKey", `('allowed-secrets.flowauth.io/' + variables.saName) in variables.nsAnn ? 'allowed-secrets.flowauth.io/' + variables.saName :
  ('flowauth.io/allowed-secrets' in variables.nsAnn ? 'flowauth.io/allowed-secrets' : '')`),
		v("listAllItems", `variables.listKey == '' ? [] : `+split(`variables.nsAnn[variables.listKey]`)),
		v("listItems", `variables.listAllItems.size() > `+maxNames+` ? variables.listAllItems.slice(0, `+maxNames+`) : variables.listAllItems`),
		v("listAll", `'*' in variables.listItems`),
		v("listEntries", `variables.listItems.filter(i, i != '*').map(i, {"name": i.split('=')[0],
  "secret": i.contains('=') ? i.substring(i.indexOf('=') + 1) : ''}).filter(e, `+validName("e.name")+` &&
  (e.secret == '' || e.secret == '*' || `+validSubdomain("e.secret")+`))`),
		// allowList.describe.
		v("listDescribed", `variables.listEntries.size() == 0 ? 'nothing' : `+some(`variables.listEntries.map(e, e.secret == '' ?
  e.name + ' from Secret ' + strings.quote(`+defaultSecret("e.name")+`) :
  (e.secret == '*' ? e.name + ' from any Secret' : e.name + ' from Secret ' + strings.quote(e.secret))).sort()`)),
	}
}
