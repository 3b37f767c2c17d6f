package policy

import (
	"strconv"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"

	"github.com/flowauth/flowauth/pkg/mutate"
	"github.com/flowauth/flowauth/pkg/secretmap"
)

// The CEL below reads a pod as pkg/mutate does; each variable names the function of pkg/mutate it
// follows. CEL has no functions of its own, so the few repeated pieces are spliced in as text.

// flowRunPods is the webhook's matchCondition: a pod that declares names, or carries a Prefect
// flow-run label (a flow run only if its namespace has defaults: variables.flowRun).
const flowRunPods = `(has(object.metadata.annotations) && 'flowauth.io/secrets' in object.metadata.annotations) ||
(has(object.metadata.labels) && ('prefect.io/flow_run_id' in object.metadata.labels || 'prefect.io/flow-run-id' in object.metadata.labels))`

// notInjectedWithTheseContainers skips a pass that can change nothing. The API server runs a
// policy again after its own change (not only after a later webhook's, as it does a webhook), and
// that second pass would cost as much as the first (measured with make burst: two evaluations per
// pod). A pass can only serve something new if the pod has containers the first pass did not see
// (flowauth.io/original-containers records them) or names containers (flowauth.io/containers,
// which may name one a later webhook adds); otherwise flowauth's output, run again, is unchanged.
const notInjectedWithTheseContainers = `!has(object.metadata.annotations) || !('flowauth.io/status' in object.metadata.annotations) ||
'flowauth.io/containers' in object.metadata.annotations || !('flowauth.io/original-containers' in object.metadata.annotations) ||
object.metadata.annotations['flowauth.io/original-containers'] != object.spec.containers.map(c, c.name).join(',')`

// items is s's items separated by commas or white space, repeats kept: a scan, whatever its size.
func items(s string) string {
	return "(" + s + `).replace('\t', ' ').replace('\n', ' ').replace('\r', ' ').replace(',', ' ').split(' ').filter(s, s != '')`
}

// split is splitList: items separated by commas or white space, each kept once, in order. Only
// for lists the tenant does not write (a Namespace's): distinct costs the square of the length.
func split(s string) string { return items(s) + ".distinct()" }

// boundedList is the prelude's three variables for a tenant's list annotation: its raw items,
// whether it is past bound (more than bound distinct items), and its distinct items when it is
// not. splitList stops counting at one past the bound; here a list of more than four times the
// bound raw items is taken as past it without counting them (distinct's cost is the square of
// the length, and an annotation may hold 256 KiB), which differs only for a list that repeats
// its items that often.
func boundedList(name, key, bound string) []admissionregistrationv1.Variable {
	raw, over := "variables.raw"+name, "variables."+name+"Over"
	return []admissionregistrationv1.Variable{
		v("raw"+name, items(`variables.ann[?'`+key+`'].orValue('')`)),
		v(name+"Over", raw+`.size() > `+bound+` && (`+raw+`.size() > 4 * `+bound+` || `+raw+`.distinct().size() > `+bound+`)`),
		v(name+"List", over+` ? [] : `+raw+`.distinct()`),
	}
}

// validName is secretmap.ValidateName.
func validName(n string) string {
	return "(" + n + ".size() <= " + maxName + " && " + n + ".matches('^[A-Z][A-Z0-9_]*$') && !" + n + ".contains('__') && !" + n + ".endsWith('_'))"
}

// dash is secretmap.DashName.
func dash(n string) string { return n + ".lowerAscii().replace('_', '-')" }

// container is a target's container, init or regular, as dyn: the two lists' element types differ.
const container = `(t.init ? dyn(variables.inits[t.index]) : dyn(variables.containers[t.index]))`

// sameEnv is pkg/mutate's sameEnv: what flowauth sets, compared.
const sameEnv = `(e.file ? (h.?value.orValue('') == e.value && !has(h.valueFrom)) :
  (h.?value.orValue('') == '' && h.?valueFrom.?secretKeyRef.?name.orValue('') == e.secret &&
   h.?valueFrom.?secretKeyRef.?key.orValue('') == e.key && h.?valueFrom.?secretKeyRef.?optional.orValue(false) == e.optional))`

// sameEnvAt is sameEnv for variables.usable[i].
var sameEnvAt = strings.NewReplacer("e.file", "variables.usable[i].file", "e.value", "variables.usable[i].value", "e.secret", "variables.usable[i].secret",
	"e.key", "variables.usable[i].key", "e.optional", "variables.usable[i].optional").Replace(sameEnv)

// trimSlash is indexMount's comparison of mount paths (one trailing slash).
func trimSlash(p string) string {
	return "(" + p + ".endsWith('/') ? " + p + ".substring(0, " + p + ".size() - 1) : " + p + ")"
}

// someComma is pkg/mutate's someComma: at most ten names, then how many more.
func someComma(list string) string {
	strs := list + ".map(x, string(x))"
	return "(" + list + ".size() <= 10 ? " + strs + ".join(',') : " + strs + ".slice(0, 10).join(',') + ',+' + string(" + list + ".size() - 10))"
}

// v is a policy variable.
func v(name, expr string) admissionregistrationv1.Variable {
	return admissionregistrationv1.Variable{Name: name, Expression: strings.TrimSpace(expr)}
}

// prelude are the variables both policies start with: the pod's and namespace's annotations and
// labels, whether the pod is a flow run (IsFlowRun), the secret map, and the allow-list.
func prelude(m *secretmap.Map, o Options) []admissionregistrationv1.Variable {
	vars := []admissionregistrationv1.Variable{
		v("ann", `object.metadata.?annotations.orValue({})`),
		v("labels", `object.metadata.?labels.orValue({})`),
		v("nsAnn", `namespaceObject.metadata.?annotations.orValue({})`),
		// The settings: each is one variable, so the chart can write it from its values.
		v(SettingNamespaceDefaults, strconv.FormatBool(!o.IgnoreNamespaceDefaults)),
		v(SettingSkipContainers, celStrings(o.SkipContainers)),
		v(SettingRequireAllowList, strconv.FormatBool(o.RequireAllowList)),
		v("nsDefaults", `variables.`+SettingNamespaceDefaults+` ? variables.nsAnn[?'flowauth.io/secrets'].orValue('') : ''`),
	}
	vars = append(vars, boundedList("Secrets", "flowauth.io/secrets", maxNames)...)
	vars = append(vars, boundedList("Containers", "flowauth.io/containers", maxListed)...)
	vars = append(vars, boundedList("Skip", "flowauth.io/skip-containers", maxListed)...)
	vars = append(vars, []admissionregistrationv1.Variable{
		v("flowRun", `'flowauth.io/secrets' in variables.ann || (variables.nsDefaults.trim() != '' &&
  ('prefect.io/flow_run_id' in variables.labels || 'prefect.io/flow-run-id' in variables.labels))`),
		v("secrets", secretsLiteral(m)),
	}...)
	return append(vars, allowListVariables()...)
}

// The variables that hold Options' settings (each a CEL literal), and the secret map.
const (
	// MapVariable holds the secret map's entries (those of the names a pod declares).
	MapVariable              = "plans"
	SettingNamespaceDefaults = "readNamespaceDefaults"
	SettingSkipContainers    = "skipContainers"
	SettingRequireAllowList  = "requireList"
)

func variables(m *secretmap.Map, o Options) []admissionregistrationv1.Variable {
	vars := prelude(m, o)
	vars = append(vars, []admissionregistrationv1.Variable{
		v("inject", `variables.ann[?'flowauth.io/inject'].orValue('both').trim()`),
		v("optedOut", `variables.inject == 'false'`),
		// parseLayers.
		v("layers", `variables.inject == 'true' ? 'both' : variables.inject`),
		// parseNames, for the pod and the namespace.
		v("podNames", `variables.SecretsList`),
		v("nsAll", split(`variables.nsDefaults`)),
		v("nsNames", `variables.nsAll.size() > `+maxNames+` ? [] : variables.nsAll.filter(n, `+validName("n")+`)`),
		// A pod whose own names are invalid, too many, or whose layers are unknown is refused by the
		// webhook (and the validating policy): nothing to inject.
		v("names", `!variables.SecretsOver && variables.podNames.all(n, `+validName("n")+`) &&
  variables.layers in ['prefect', 'native', 'both'] ?
  (variables.podNames + variables.nsNames.filter(n, !(n in variables.podNames))).filter(n, `+allowed("n")+`) : []`),
		// planFor, with secretName's override.
		v("plans", `variables.names.map(n, {
  "name": dyn(n),
  "secret": dyn(variables.ann[?('secret.flowauth.io/' + n)].orValue(`+defaultSecret("n")+`)),
  "volume": dyn('flowauth-' + `+dash("n")+`),
  "dir": dyn('/var/run/secrets/flowauth/' + `+dash("n")+`),
  "entry": dyn(`+entryOf(m, "n")+`)
})`),
		v("envOf", `variables.plans.map(p, (((variables.layers != 'native') ? p.entry.prefect : []) + ((variables.layers != 'prefect') ? p.entry.native : []))
  .map(e, {"name": e.name, "key": e.key, "optional": e.optional, "value": e.value, "file": e.file, "plan": p.name, "secret": p.secret})).flatten()`),
		// claimEnv: each variable belongs to the first declared name that sets it.
		v("claimed", `lists.range(variables.envOf.size()).filter(i, !variables.envOf.slice(0, i).exists(x, x.name == variables.envOf[i].name)).map(i, variables.envOf[i])`),
		v("volumes", `object.spec.?volumes.orValue([])`),
		// checkVolumes: a volume of flowauth's name that is not flowauth's blocks that name's files.
		v("blocked", `variables.layers == 'prefect' ? [] : variables.plans.filter(p, p.entry.files.size() > 0 &&
  variables.volumes.exists(v, v.name == p.volume && !(has(v.secret) && !has(v.projected) &&
    v.secret.?secretName.orValue('') == p.secret &&
    v.secret.?items.orValue([]).map(it, it.key + '=' + it.path) == p.entry.files.map(k, k + '=' + k) &&
    v.secret.?optional.orValue(false) == p.entry.filesOptional))).map(p, p.name)`),
		v("mountPlans", `variables.layers == 'prefect' ? [] : variables.plans.filter(p, p.entry.files.size() > 0 && !(p.name in variables.blocked))`),
		v("containers", `object.spec.containers`),
		v("inits", `object.spec.?initContainers.orValue([])`),
		// selectContainers and flowContainer.
		v("podSkip", `variables.SkipList`),
		v("named", `'flowauth.io/containers' in variables.ann`),
		v("namedList", `variables.ContainersList`),
		v("recorded", `'flowauth.io/original-containers' in variables.ann`),
		v("firstPass", items(`variables.ann[?'flowauth.io/original-containers'].orValue('')`)),
		v("candidates", `lists.range(variables.containers.size()).filter(i, !(variables.containers[i].name in variables.podSkip) &&
  !(variables.containers[i].name in variables.`+SettingSkipContainers+`) &&
  (!variables.recorded || variables.containers[i].name in variables.firstPass))`),
		v("flow", `variables.candidates.exists(i, variables.containers[i].name == 'prefect-job') ?
  variables.candidates.filter(i, variables.containers[i].name == 'prefect-job')[0] :
  (variables.candidates.size() > 0 ? variables.candidates[0] : -1)`),
		v("targets", `variables.named ?
  variables.namedList.filter(n, !(n in variables.podSkip)).map(n,
    lists.range(variables.inits.size()).filter(i, variables.inits[i].name == n).map(i, {"init": dyn(true), "index": dyn(i), "name": dyn(n)}) +
    lists.range(variables.containers.size()).filter(i, variables.containers[i].name == n).map(i, {"init": dyn(false), "index": dyn(i), "name": dyn(n)})).flatten() :
  (variables.flow >= 0 ? [{"init": dyn(false), "index": dyn(variables.flow), "name": dyn(variables.containers[variables.flow].name)}] : [])`),
		v("skipped", `variables.named ? variables.namedList.filter(n, n in variables.podSkip) :
  lists.range(variables.containers.size()).filter(i, i != variables.flow).map(i, string(variables.containers[i].name))`),
		// addToContainer, for each target: what it gets, what it has already, what its user set.
		// The variables flowauth may add (those of a name whose files a user volume blocks are not),
		// and each target's env vars and mounts as the pod has them, read once.
		v("usable", `variables.claimed.filter(e, !(e.file && e.plan in variables.blocked))`),
		v("targetLists", `variables.targets.map(t, {"t": dyn(t), "env": dyn(`+container+`.?env.orValue([])), "mounts": dyn(`+container+`.?volumeMounts.orValue([]))})`),
		// Each usable variable with the target's env vars of its name, found in one pass (a
		// container may hold 1,024 env vars and a pod declare 64 names: the API server's CEL cost
		// limit allows one such pass, not three).
		v("perTarget", `variables.targetLists.map(x, {
  "path": dyn((x.t.init ? '/spec/initContainers/' : '/spec/containers/') + string(x.t.index)),
  "hasEnv": dyn(x.env.size() > 0),
  "hasMounts": dyn(x.mounts.size() > 0),
  "found": dyn(variables.usable.map(e, x.env.filter(h, h.name == e.name))),
  "mAdd": dyn(variables.mountPlans.filter(p, !x.mounts.exists(m, `+trimSlash("m.mountPath")+` == p.dir))),
  "mSame": dyn(variables.mountPlans.filter(p, x.mounts.exists(m, `+trimSlash("m.mountPath")+` == p.dir && m.name == p.volume))),
  "mKept": dyn(variables.mountPlans.filter(p, x.mounts.exists(m, `+trimSlash("m.mountPath")+` == p.dir && m.name != p.volume)).map(p, p.dir))
}).map(t, {
  "path": t.path, "hasEnv": t.hasEnv, "hasMounts": t.hasMounts, "mAdd": t.mAdd, "mSame": t.mSame, "mKept": t.mKept,
  "add": dyn(lists.range(variables.usable.size()).filter(i, t.found[i].size() == 0).map(i, variables.usable[i])),
  "same": dyn(lists.range(variables.usable.size()).filter(i, t.found[i].exists(h, `+sameEnvAt+`)).map(i, variables.usable[i])),
  "kept": dyn(lists.range(variables.usable.size()).filter(i, t.found[i].exists(h, !`+sameEnvAt+`)).map(i, variables.usable[i].name))
})`),
		v("injected", `variables.names.map(n, string(n)).filter(n, variables.perTarget.exists(t, t.add.exists(e, e.plan == n) || t.same.exists(e, e.plan == n) ||
  t.mAdd.exists(p, p.name == n) || t.mSame.exists(p, p.name == n)))`),
		// addUsedVolumes.
		v("newVolumes", `variables.mountPlans.filter(p, variables.perTarget.exists(t, t.mAdd.exists(x, x.name == p.name) || t.mSame.exists(x, x.name == p.name)) &&
  !variables.volumes.exists(v, v.name == p.volume))`),
		// status.
		v("keptEnv", `variables.perTarget.map(t, t.kept).flatten().map(x, string(x)).distinct().sort()`),
		v("keptMounts", `variables.perTarget.map(t, t.mKept).flatten().map(x, string(x)).distinct().sort()`),
		v("targetNames", `variables.targets.map(t, string(t.name))`),
		v("status", `'injected=' + variables.injected.join(',') +
  ((variables.named || variables.skipped.size() > 0) ? '; containers=' + `+someComma("variables.targetNames")+` : '') +
  (variables.skipped.size() > 0 ? '; skipped-containers=' + `+someComma("variables.skipped")+` : '') +
  (variables.layers != 'both' ? '; layers=' + variables.layers : '') +
  (variables.keptEnv.size() > 0 ? '; kept-user-env=' + variables.keptEnv.join(',') : '') +
  (variables.keptMounts.size() > 0 ? '; kept-user-mount=' + variables.keptMounts.join(',') : '') +
  (variables.blocked.size() > 0 ? '; kept-user-volume=' + variables.blocked.map(n, 'flowauth-' + `+dash("string(n)")+`).sort().join(',') : '')`),
		// patchEstimate: the bytes of the patch, per target container and for the volumes.
		v("estimate", `(variables.claimed.map(e, `+overhead+` + e.name.size() + e.value.size() + (e.file ? 0 : e.secret.size() + e.key.size())).sum() +
   variables.plans.filter(p, variables.layers != 'prefect' && p.entry.files.size() > 0).map(p, `+overhead+` + p.volume.size() + p.dir.size()).sum()) * variables.targets.size() +
  variables.plans.filter(p, variables.layers != 'prefect' && p.entry.files.size() > 0).map(p, `+overhead+` + p.volume.size() + p.secret.size() +
    p.entry.files.map(k, 32 + 2 * string(k).size()).sum()).sum()`),
		v("tooLarge", `variables.estimate > `+maxPatch),
		// The pod is within pkg/mutate's bounds (the validating policy refuses it otherwise, with
		// the message): each checked alone, cheapest first, so that a pod past them costs little.
		v("bounded", `variables.inits.size() + variables.containers.size() <= `+maxContainers+` && variables.volumes.size() <= `+maxVolumes+` &&
  (variables.inits + variables.containers).all(c, c.?env.orValue([]).size() <= `+maxEnv+` && c.?envFrom.orValue([]).size() <= `+maxEnvFrom+` &&
    c.?volumeMounts.orValue([]).size() <= `+maxVolumeMounts+`) &&
  !variables.SecretsOver && !variables.ContainersOver && !variables.SkipOver`),
		v("doInject", `variables.flowRun && !variables.optedOut && variables.bounded && variables.names.size() > 0 && !variables.tooLarge`),
	}...)
	return vars
}

// envObject is a typed env var of a target container (the JSON is the same for init containers).
const envObject = `Object.spec.containers.env{name: e.name,
  ?value: e.file ? optional.of(e.value) : optional.none(),
  ?valueFrom: e.file ? optional.none() : optional.of(Object.spec.containers.env.valueFrom{
    secretKeyRef: Object.spec.containers.env.valueFrom.secretKeyRef{name: e.secret, key: e.key,
      ?optional: e.optional ? optional.of(true) : optional.none()}})}`

const mountObject = `Object.spec.containers.volumeMounts{name: p.volume, mountPath: p.dir, readOnly: true}`

// volumeObjectAt is variables.newVolumes[i] with no items yet (they are appended one by one).
const volumeObjectAt = `Object.spec.volumes{name: variables.newVolumes[i].volume, secret: Object.spec.volumes.secret{secretName: variables.newVolumes[i].secret,
  items: [], ?optional: variables.newVolumes[i].entry.filesOptional ? optional.of(true) : optional.none()}}`

// mutations is one JSONPatch mutation: the API server evaluates each mutation of a policy with
// its own variables (computed again) and encodes, patches and decodes the pod for each, so the
// whole injection is one list of operations, all computed from the pod as it came.
func mutations() []admissionregistrationv1.Mutation {
	return []admissionregistrationv1.Mutation{{PatchType: admissionregistrationv1.PatchTypeJSONPatch,
		JSONPatch: &admissionregistrationv1.JSONPatch{Expression: strings.TrimSpace(`
variables.flowRun && variables.optedOut ?
  // optOut: the status says so, nothing else changes.
  (variables.ann[?'flowauth.io/status'].orValue('') == 'opted-out=flowauth.io/inject=false' ? [] :
   [JSONPatch{op: 'add', path: '/metadata/annotations/flowauth.io~1status', value: 'opted-out=flowauth.io/inject=false'}]) :
variables.flowRun && !variables.optedOut && variables.bounded && variables.names.size() > 0 && variables.tooLarge ?
  // Too large a patch: nothing injected; the validating policy refuses the pod with the figures.
  (has(object.metadata.annotations) ? [] : [JSONPatch{op: 'add', path: '/metadata/annotations', value: {}}]) +
  [JSONPatch{op: 'add', path: '/metadata/annotations/flowauth.io~1injection-too-large',
    value: string(variables.names.size()) + ',' + string(variables.targets.size()) + ',' + string(variables.estimate / 1024)}] :
!variables.doInject ? [] :
  // addToContainer's env vars, then its mounts, per target, each appended; an absent list is
  // added empty first (a value that is a list of objects makes Kubernetes 1.36's API server
  // panic: cel-go 0.26 cannot convert it to JSON).
  variables.perTarget.map(t, t.add.size() == 0 ? [] :
  (t.hasEnv ? [] : [JSONPatch{op: 'add', path: t.path + '/env', value: []}]) +
  t.add.map(e, JSONPatch{op: 'add', path: t.path + '/env/-', value: ` + envObject + `})).flatten() +
  variables.perTarget.map(t, t.mAdd.size() == 0 ? [] :
  (t.hasMounts ? [] : [JSONPatch{op: 'add', path: t.path + '/volumeMounts', value: []}]) +
  t.mAdd.map(p, JSONPatch{op: 'add', path: t.path + '/volumeMounts/-', value: ` + mountObject + `})).flatten() +
  // addUsedVolumes: each volume, then its items one by one (a list again).
  (variables.newVolumes.size() == 0 ? [] :
   (variables.volumes.size() > 0 ? [] : [JSONPatch{op: 'add', path: '/spec/volumes', value: []}]) +
   lists.range(variables.newVolumes.size()).map(i, [JSONPatch{op: 'add', path: '/spec/volumes/-', value: ` + volumeObjectAt + `}] +
     variables.newVolumes[i].entry.files.map(k, JSONPatch{op: 'add', path: '/spec/volumes/' + string(variables.volumes.size() + i) + '/secret/items/-',
       value: Object.spec.volumes.secret.items{key: k, path: k}})).flatten()) +
  // The status, and the containers of the first pass.
  (has(object.metadata.annotations) ? [] : [JSONPatch{op: 'add', path: '/metadata/annotations', value: {}}]) +
  [JSONPatch{op: 'add', path: '/metadata/annotations/flowauth.io~1status', value: variables.status}] +
  (variables.recorded ? [] : [JSONPatch{op: 'add', path: '/metadata/annotations/flowauth.io~1original-containers',
    value: variables.containers.map(c, c.name).join(',')}])`)}}}
}

// The bounds of pkg/mutate and secretmap, as CEL literals.
var (
	maxName         = strconv.Itoa(secretmap.MaxNameLength)
	maxNames        = strconv.Itoa(mutate.MaxDeclaredNames)
	maxListed       = strconv.Itoa(mutate.MaxListedContainers)
	maxContainers   = strconv.Itoa(mutate.MaxContainers)
	maxVolumes      = strconv.Itoa(mutate.MaxVolumes)
	maxEnv          = strconv.Itoa(mutate.MaxEnv)
	maxEnvFrom      = strconv.Itoa(mutate.MaxEnvFrom)
	maxVolumeMounts = strconv.Itoa(mutate.MaxVolumeMounts)
	maxPatch        = strconv.Itoa(mutate.MaxPatchBytes)
	// overhead is patchEstimate's per item: an operation's and an object's JSON.
	overhead = strconv.Itoa(mutate.PatchOpOverhead + mutate.PatchItemOverhead)
)
