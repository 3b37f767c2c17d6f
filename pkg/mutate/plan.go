package mutate

import (
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/flowauth/flowauth/pkg/secretmap"
)

// plan is what one declared name adds: env vars for every target container, and at most one
// read-only secret volume with its mount.
type plan struct {
	name   string
	secret string
	env    []corev1.EnvVar
	volume *corev1.Volume
	mount  *corev1.VolumeMount
	// fileEnv names the env vars that hold a mounted file's path: dropped with the volume when
	// the volume cannot be added, so no variable points at a file that is not there.
	fileEnv map[string]string // env var name → the key whose file it points at
}

// planFor builds the items of DESIGN.md §3 for one entry. Every env var is a secretKeyRef and
// every file a secret volume: no value is ever copied into the pod spec.
func planFor(e secretmap.Entry, secret string, layers Layers) plan {
	p := plan{name: e.Name, secret: secret, env: make([]corev1.EnvVar, 0, envCount(e, layers))}
	// The references' parts come from one allocation: a plan's env vars are built per request.
	parts := make([]struct {
		source   corev1.EnvVarSource
		selector corev1.SecretKeySelector
		optional bool
	}, cap(p.env))
	ref := func(envName, key string) corev1.EnvVar {
		part := &parts[len(p.env)]
		part.selector = corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: key}
		if k, _ := e.Key(key); k.Optional {
			part.optional = true
			part.selector.Optional = &part.optional
		}
		part.source.SecretKeyRef = &part.selector
		return corev1.EnvVar{Name: envName, ValueFrom: &part.source}
	}
	if layers.prefect() {
		base := secretmap.PrefectEnvPrefix + e.Name
		if e.Shape == secretmap.ShapeDict {
			for _, k := range e.Keys {
				p.env = append(p.env, ref(base+"__"+k.Name, k.Name))
			}
		} else {
			p.env = append(p.env, ref(base, e.Keys[0].Name))
		}
	}
	if layers.native() {
		for _, v := range e.Native.Env {
			p.env = append(p.env, ref(v.Name, v.Key))
		}
		if len(e.Native.Files) > 0 {
			dir := secretmap.MountDir(e.Name)
			src := &corev1.SecretVolumeSource{SecretName: secret, Items: make([]corev1.KeyToPath, 0, len(e.Native.Files))}
			allOptional := true
			p.fileEnv = map[string]string{}
			for _, f := range e.Native.Files {
				src.Items = append(src.Items, corev1.KeyToPath{Key: f.Key, Path: f.Key})
				if k, _ := e.Key(f.Key); !k.Optional {
					allOptional = false
				}
				if f.Env != "" {
					p.env = append(p.env, corev1.EnvVar{Name: f.Env, Value: dir + "/" + f.Key})
					p.fileEnv[f.Env] = f.Key
				}
			}
			if allOptional {
				src.Optional = &allOptional
			}
			p.volume = &corev1.Volume{Name: secretmap.VolumeName(e.Name), VolumeSource: corev1.VolumeSource{Secret: src}}
			p.mount = &corev1.VolumeMount{Name: p.volume.Name, MountPath: dir, ReadOnly: true}
		}
	}
	return p
}

// envCount is how many env vars planFor gives the entry.
func envCount(e secretmap.Entry, layers Layers) int {
	n := 0
	if layers.prefect() {
		n = 1
		if e.Shape == secretmap.ShapeDict {
			n = len(e.Keys)
		}
	}
	if layers.native() {
		n += len(e.Native.Env)
		for _, f := range e.Native.Files {
			if f.Env != "" {
				n++
			}
		}
	}
	return n
}

// appendWithRoom appends item; when the list is full it first makes room for up to room more
// items, so adding a pod's injections costs one allocation per list rather than one per
// doubling, and a list that gets nothing is left as it was (nil stays nil).
func appendWithRoom[T any](list []T, item T, room int) []T {
	if len(list) == cap(list) {
		list = slices.Grow(list, room)
	}
	return append(list, item)
}

// claimEnv gives every env var one owner, the first declared name that sets it, and drops it
// from the later plans. Deciding it here, not while adding, keeps the answer the same in every
// pass: on a reinvocation the owner's variable is already in the pod and must not be mistaken for
// a user setting.
func claimEnv(plans []plan, r *Result) {
	owner := map[string]string{}
	for i := range plans {
		kept := plans[i].env[:0]
		for _, e := range plans[i].env {
			if first, taken := owner[e.Name]; taken {
				r.warn(ReasonDeclaredEnvConflict, "env %s is set by both %s and %s; %s's is used (declared first)", e.Name, first, plans[i].name, first)
				continue
			}
			owner[e.Name] = plans[i].name
			kept = append(kept, e)
		}
		plans[i].env = kept
	}
}

// applier adds plans to a pod copy and remembers what it did and what it left alone.
type applier struct {
	result *Result
	// keys and namespace find the names a container gets through envFrom; nil keys: unknown.
	keys      KeyLookup
	namespace string
	// envFrom holds the key names of each envFrom source looked up so far; envFromUnchecked
	// counts the sources beyond MaxEnvFromSources.
	envFrom          map[envFromSource][]string
	envFromUnchecked int
	// envFromAllowed, when set, tells which envFrom Secrets may be looked up (the allow-list);
	// envFromNotAllowed lists those that were not.
	envFromAllowed    func(secret string) bool
	envFromNotAllowed []string
	changed           bool
	// served: declared names with at least one item present in at least one container.
	served map[string]bool
	// blockedVolumes: plans whose volume name is taken by a volume that is not flowauth's.
	blockedVolumes map[string]bool
	keptEnv        []string
	keptMounts     []string
	usedVolumes    map[string]bool
}

// checkVolumes finds plans whose volume name is taken by a volume that is not the same secret
// volume: that volume belongs to someone else and wins, and the plan's files are skipped.
func (a *applier) checkVolumes(pod *corev1.Pod, plans []plan) {
	for _, p := range plans {
		if p.volume == nil {
			continue
		}
		if i := indexVolume(pod.Spec.Volumes, p.volume.Name); i >= 0 && !sameSecretVolume(pod.Spec.Volumes[i], *p.volume) {
			if a.blockedVolumes == nil {
				a.blockedVolumes = map[string]bool{}
			}
			a.blockedVolumes[p.name] = true
			a.result.warn(ReasonVolumeConflict, "volume %q already exists in the pod and is not flowauth's secret volume for %s; kept it, so %s's files (and the env vars pointing at them) are not injected",
				p.volume.Name, p.name, p.name)
		}
	}
}

// addUsedVolumes adds the volume of every plan that some container mounts, unless it is there
// already. A volume that no container mounts (every target kept the user's mount at that path)
// is not added: it would still make the kubelet fetch the Secret.
func (a *applier) addUsedVolumes(pod *corev1.Pod, plans []plan) {
	for _, p := range plans {
		if p.volume == nil || !a.usedVolumes[p.volume.Name] || indexVolume(pod.Spec.Volumes, p.volume.Name) >= 0 {
			continue
		}
		pod.Spec.Volumes = appendWithRoom(pod.Spec.Volumes, *p.volume, len(plans))
		a.changed = true
	}
}

// addToContainer adds every plan's env vars and mount to one container, per item: an item that
// is there already (a reinvocation) is left as is; a different item of the same name or path
// was set by the user and wins (DESIGN.md §3).
func (a *applier) addToContainer(c *corev1.Container, plans []plan) {
	fromEnvFrom := a.envFromNames(c)
	env, mounts := 0, 0 // at most this many items are added
	for _, p := range plans {
		env += len(p.env)
		if p.mount != nil {
			mounts++
		}
	}
	for _, p := range plans {
		blocked := a.blockedVolumes[p.name]
		for _, e := range p.env {
			if _, isPath := p.fileEnv[e.Name]; blocked && isPath {
				continue
			}
			i := indexEnv(c.Env, e.Name)
			switch {
			case i < 0 && fromEnvFrom[e.Name] != "":
				a.keptEnv = appendOnce(a.keptEnv, e.Name)
				a.result.warn(ReasonUserEnvKept, "container %q: env %s comes from envFrom (%s); kept it, so %s's %s is not injected there", c.Name, e.Name, fromEnvFrom[e.Name], p.name, e.Name)
			case i < 0:
				c.Env = appendWithRoom(c.Env, e, env)
				a.served[p.name] = true
				a.changed = true
			case sameEnv(c.Env[i], e):
				a.served[p.name] = true
			default:
				a.keptEnv = appendOnce(a.keptEnv, e.Name)
				a.result.warn(ReasonUserEnvKept, "container %q: env %s is already set by the pod; kept it, so %s's %s is not injected there", c.Name, e.Name, p.name, e.Name)
			}
		}
		if p.mount == nil || blocked {
			continue
		}
		i := indexMount(c.VolumeMounts, p.mount.MountPath)
		switch {
		case i < 0:
			c.VolumeMounts = appendWithRoom(c.VolumeMounts, *p.mount, mounts)
			a.markUsed(p.mount.Name)
			a.served[p.name] = true
			a.changed = true
		case c.VolumeMounts[i].Name == p.mount.Name:
			a.markUsed(p.mount.Name)
			a.served[p.name] = true
		default:
			a.keptMounts = appendOnce(a.keptMounts, p.mount.MountPath)
			a.result.warn(ReasonUserMountKept, "container %q: %s is already mounted from volume %s; kept it, so %s's files are not mounted there", c.Name, p.mount.MountPath, quote(c.VolumeMounts[i].Name), p.name)
		}
	}
}

func (a *applier) markUsed(volume string) {
	if a.usedVolumes == nil {
		a.usedVolumes = map[string]bool{}
	}
	a.usedVolumes[volume] = true
}

// status is the flowauth.io/status line: what was served, where, and what was left alone.
func status(injected []string, targets []target, skipped []string, pod *corev1.Pod, a *applier, layers Layers) string {
	parts := []string{"injected=" + strings.Join(injected, ",")}
	if _, ok := pod.Annotations[AnnotationContainers]; ok || len(skipped) > 0 {
		names := make([]string, len(targets))
		for i, t := range targets {
			names[i] = t.name
		}
		parts = append(parts, "containers="+someComma(names))
	}
	if len(skipped) > 0 {
		parts = append(parts, "skipped-containers="+someComma(skipped))
	}
	if layers != LayersBoth {
		parts = append(parts, "layers="+string(layers))
	}
	if len(a.keptEnv) > 0 {
		sort.Strings(a.keptEnv)
		parts = append(parts, "kept-user-env="+strings.Join(a.keptEnv, ","))
	}
	if len(a.keptMounts) > 0 {
		sort.Strings(a.keptMounts)
		parts = append(parts, "kept-user-mount="+strings.Join(a.keptMounts, ","))
	}
	if len(a.blockedVolumes) > 0 {
		var names []string
		for n := range a.blockedVolumes {
			names = append(names, secretmap.VolumeName(n))
		}
		sort.Strings(names)
		parts = append(parts, "kept-user-volume="+strings.Join(names, ","))
	}
	return strings.Join(parts, "; ")
}

func appendOnce(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

func indexEnv(env []corev1.EnvVar, name string) int {
	for i := range env {
		if env[i].Name == name {
			return i
		}
	}
	return -1
}

func indexMount(mounts []corev1.VolumeMount, path string) int {
	clean := strings.TrimRight(path, "/")
	for i := range mounts {
		if strings.TrimRight(mounts[i].MountPath, "/") == clean {
			return i
		}
	}
	return -1
}

func indexVolume(volumes []corev1.Volume, name string) int {
	for i := range volumes {
		if volumes[i].Name == name {
			return i
		}
	}
	return -1
}

// sameEnv compares only what flowauth sets, because the API server may have defaulted the rest
// of a variable that flowauth added in an earlier pass.
func sameEnv(have, want corev1.EnvVar) bool {
	if want.ValueFrom == nil {
		return have.ValueFrom == nil && have.Value == want.Value
	}
	if have.Value != "" || have.ValueFrom == nil || have.ValueFrom.SecretKeyRef == nil {
		return false
	}
	h, w := have.ValueFrom.SecretKeyRef, want.ValueFrom.SecretKeyRef
	return h.Name == w.Name && h.Key == w.Key && isTrue(h.Optional) == isTrue(w.Optional)
}

// sameSecretVolume compares only what flowauth sets (the API server defaults defaultMode).
func sameSecretVolume(have, want corev1.Volume) bool {
	h, w := have.Secret, want.Secret
	if h == nil || have.Projected != nil || h.SecretName != w.SecretName || len(h.Items) != len(w.Items) {
		return false
	}
	for i := range w.Items {
		if h.Items[i].Key != w.Items[i].Key || h.Items[i].Path != w.Items[i].Path {
			return false
		}
	}
	return isTrue(h.Optional) == isTrue(w.Optional)
}

func isTrue(b *bool) bool { return b != nil && *b }

// Sizes of one JSON Patch operation's parts, for patchEstimate: the op and path around an
// item, and the JSON around an env var's name, Secret and key (exported for pkg/policy, which
// estimates the same in CEL).
const (
	PatchOpOverhead   = 64
	PatchItemOverhead = 80
	opOverhead        = PatchOpOverhead
	envOverhead       = PatchItemOverhead
)

// patchEstimate is an upper bound of the bytes of the JSON Patch that adds the plans to
// containers target containers: every item counted as added, each at its longest.
func patchEstimate(plans []plan, containers int) int {
	perContainer, volumes := 0, 0
	for _, p := range plans {
		for _, e := range p.env {
			n := opOverhead + envOverhead + len(e.Name) + len(e.Value)
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				n += len(e.ValueFrom.SecretKeyRef.Name) + len(e.ValueFrom.SecretKeyRef.Key)
			}
			perContainer += n
		}
		if p.mount != nil {
			perContainer += opOverhead + envOverhead + len(p.mount.Name) + len(p.mount.MountPath)
			volumes += opOverhead + envOverhead + len(p.volume.Name) + len(p.secret)
			for _, it := range p.volume.Secret.Items {
				volumes += 32 + len(it.Key) + len(it.Path)
			}
		}
	}
	return perContainer*containers + volumes
}
