package mutate

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/flowauth/flowauth/pkg/secretmap"
)

// KeyLookup tells which keys exist in a namespace's Secrets and ConfigMaps: key names only,
// never a value (pkg/secretkeys keeps no values at all). Implementations are in-memory snapshots,
// so Pod stays free of I/O.
type KeyLookup interface {
	// SecretKeys returns the Secret's key names, sorted, and whether the Secret exists.
	SecretKeys(namespace, name string) (keys []string, found bool)
	// ConfigMapKeys does the same for a ConfigMap (data and binaryData).
	ConfigMapKeys(namespace, name string) (keys []string, found bool)
	// SecretType returns the Secret's type where the lookup knows it, "" where it does not.
	// pkg/secretkeys' cache holds no Secret of a RestrictedSecretTypes type, so it says ""; a
	// live read knows every type.
	SecretType(namespace, name string) string
}

// RestrictedSecretTypes are the Secret types flowauth never injects unless the namespace's
// allow-list names that exact Secret (NAME=SECRET): a flow run given one would hold a
// ServiceAccount's Kubernetes rights, a node-joining token or registry credentials, none of them
// a third-party service's credentials.
var RestrictedSecretTypes = []string{
	string(corev1.SecretTypeServiceAccountToken),
	string(corev1.SecretTypeBootstrapToken),
	string(corev1.SecretTypeDockerConfigJson),
	string(corev1.SecretTypeDockercfg),
}

// refuseRestrictedTypes refuses each plan whose Secret is of a restricted type, where the type
// is known (key lookup), unless the allow-list names that exact Secret for that name: neither
// NAME=* nor * nor the absence of a list is enough.
func refuseRestrictedTypes(in Input, list *allowList, namespace string, plans []plan, r *Result) {
	for _, p := range plans {
		t := in.Keys.SecretType(namespace, p.secret)
		if !slices.Contains(RestrictedSecretTypes, t) || (list != nil && list.namesExactly(p.name, p.secret)) {
			continue
		}
		r.deny(ReasonRestrictedSecretType, "namespace %q: Secret %q is of type %s, which flowauth injects only where the namespace's allow-list names that exact Secret: a flow run given it would hold %s. If %s really must come from it, a namespace administrator can allow it: kubectl annotate namespace %s %s=%s=%s",
			namespace, p.secret, t, restrictedWhat(t), p.name, namespace, AnnotationAllowedSecrets, p.name, p.secret)
	}
}

func restrictedWhat(t string) string {
	switch corev1.SecretType(t) {
	case corev1.SecretTypeServiceAccountToken:
		return "that ServiceAccount's Kubernetes rights"
	case corev1.SecretTypeBootstrapToken:
		return "a token that joins nodes to the cluster"
	default:
		return "the cluster's image registry credentials"
	}
}

// MissingPolicy says what a missing Secret or required key is, when keys are looked up.
type MissingPolicy string

const (
	// MissingWarn serves the pod as declared and warns: the pod waits in
	// CreateContainerConfigError until the Secret is created, then starts.
	MissingWarn MissingPolicy = "warn"
	// MissingDeny refuses the pod (and, on the Job path, the Job) with the same message.
	MissingDeny MissingPolicy = "deny"
	// MissingIgnore serves the pod as declared and says nothing.
	MissingIgnore MissingPolicy = "ignore"
)

// checkKeys compares each plan with the keys its Secret has. Optional keys that are absent are
// not referenced at all; a missing Secret or required key is reported under the policy, with
// the command that would fix it. The plan keeps its required references either way: a pod that
// is let through starts as soon as the Secret is there.
func checkKeys(in Input, namespace string, entries []secretmap.Entry, plans []plan, r *Result) {
	for i := range plans {
		p, e := &plans[i], entries[i]
		keys, found := in.Keys.SecretKeys(namespace, p.secret)
		has := func(k string) bool { _, ok := slices.BinarySearch(keys, k); return found && ok }
		var required, optional []string
		for _, k := range p.referencedKeys() {
			if ek, _ := e.Key(k); ek.Optional {
				optional = append(optional, k)
			} else {
				required = append(required, k)
			}
		}
		p.dropAbsentOptional(e, has)

		var missing []string
		for _, k := range required {
			if !has(k) {
				missing = append(missing, k)
			}
		}
		switch {
		case !found:
			report(in.Missing, r, ReasonSecretNotFound, "namespace %q: Secret %q not found; %s needs it%s. Create it: %s",
				namespace, p.secret, p.name, keyList(required, optional), createCommand(namespace, p.secret, required, e))
		case len(missing) > 0:
			report(in.Missing, r, ReasonSecretKeyMissing, "namespace %q: Secret %q has no key %s, which %s needs. Add it: %s",
				namespace, p.secret, quoteAll(missing), p.name, patchCommand(namespace, p.secret, missing))
		}
	}
}

func report(policy MissingPolicy, r *Result, reason Reason, format string, args ...any) {
	switch policy {
	case MissingDeny:
		r.deny(reason, format, args...)
	case MissingIgnore:
	default:
		r.warn(reason, format, args...)
	}
}

// referencedKeys lists the Secret keys the plan reads, in order, once each.
func (p *plan) referencedKeys() []string {
	var keys []string
	for _, e := range p.env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && !slices.Contains(keys, e.ValueFrom.SecretKeyRef.Key) {
			keys = append(keys, e.ValueFrom.SecretKeyRef.Key)
		}
	}
	if p.volume != nil {
		for _, item := range p.volume.Secret.Items {
			if !slices.Contains(keys, item.Key) {
				keys = append(keys, item.Key)
			}
		}
	}
	return keys
}

// dropAbsentOptional removes references to optional keys the Secret does not have, and the
// volume (with its mount and path variables) when none of its files is left.
func (p *plan) dropAbsentOptional(e secretmap.Entry, has func(string) bool) {
	absent := func(key string) bool {
		k, _ := e.Key(key)
		return k.Optional && !has(key)
	}
	if p.volume != nil {
		items := slices.DeleteFunc(slices.Clone(p.volume.Secret.Items), func(it corev1.KeyToPath) bool { return absent(it.Key) })
		// A path variable goes with its file.
		p.env = slices.DeleteFunc(p.env, func(v corev1.EnvVar) bool {
			key, isPath := p.fileEnv[v.Name]
			return isPath && absent(key)
		})
		switch {
		case len(items) == 0:
			p.volume, p.mount = nil, nil
		case len(items) < len(p.volume.Secret.Items):
			vol := p.volume.DeepCopy()
			vol.Secret.Items = items
			p.volume = vol
		}
	}
	p.env = slices.DeleteFunc(p.env, func(v corev1.EnvVar) bool {
		return v.ValueFrom != nil && v.ValueFrom.SecretKeyRef != nil && absent(v.ValueFrom.SecretKeyRef.Key)
	})
}

func keyList(required, optional []string) string {
	var parts []string
	if len(required) > 0 {
		parts = append(parts, "keys "+strings.Join(required, ", "))
	}
	if len(optional) > 0 {
		parts = append(parts, "optional "+strings.Join(optional, ", "))
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, "; ") + ")"
}

// createCommand is the kubectl command that creates the Secret with every required key: files
// (keys flowauth mounts) from a path, the rest as literals. Placeholders stand for the values.
func createCommand(namespace, secret string, required []string, e secretmap.Entry) string {
	cmd := fmt.Sprintf("kubectl create secret generic %s -n %s", secret, namespace)
	for _, k := range required {
		if e.IsFile(k) {
			cmd += fmt.Sprintf(" --from-file=%s=<path to %s>", k, k)
		} else {
			cmd += fmt.Sprintf(" --from-literal=%s=<value>", k)
		}
	}
	return cmd
}

func patchCommand(namespace, secret string, missing []string) string {
	fields := make([]string, len(missing))
	for i, k := range missing {
		fields[i] = fmt.Sprintf("%q:%q", k, "<value>")
	}
	return fmt.Sprintf(`kubectl patch secret %s -n %s --type=merge -p '{"stringData":{%s}}'`, secret, namespace, strings.Join(fields, ","))
}

func quoteAll(keys []string) string {
	q := make([]string, len(keys))
	for i, k := range keys {
		q[i] = fmt.Sprintf("%q", k)
	}
	return strings.Join(q, ", ")
}

// envFromSource is one envFrom source, as looked up.
type envFromSource struct {
	configMap bool
	name      string
}

// envFromNames lists the env var names a container gets through envFrom, with where each comes
// from, for the sources whose keys are known. They count as set by the user. Each source is
// looked up once per pod, and at most MaxEnvFromSources of them: the rest are said in one
// warning, not looked up.
func (a *applier) envFromNames(c *corev1.Container) map[string]string {
	if a.keys == nil || len(c.EnvFrom) == 0 {
		return nil
	}
	names := map[string]string{}
	for _, src := range c.EnvFrom {
		var ref envFromSource
		switch {
		case src.SecretRef != nil:
			ref = envFromSource{name: src.SecretRef.Name}
		case src.ConfigMapRef != nil:
			ref = envFromSource{configMap: true, name: src.ConfigMapRef.Name}
		default:
			continue
		}
		if !ref.configMap && a.envFromAllowed != nil && !a.envFromAllowed(ref.name) {
			if !slices.Contains(a.envFromNotAllowed, ref.name) && len(a.envFromNotAllowed) < MaxEnvFromSources {
				a.envFromNotAllowed = append(a.envFromNotAllowed, ref.name)
			}
			continue
		}
		ks, ok := a.envFrom[ref]
		if !ok {
			if len(a.envFrom) >= MaxEnvFromSources {
				a.envFromUnchecked++
				continue
			}
			if ref.configMap {
				ks, _ = a.keys.ConfigMapKeys(a.namespace, ref.name)
			} else {
				ks, _ = a.keys.SecretKeys(a.namespace, ref.name)
			}
			if a.envFrom == nil {
				a.envFrom = map[envFromSource][]string{}
			}
			a.envFrom[ref] = ks
		}
		from := "Secret " + quote(ref.name)
		if ref.configMap {
			from = "ConfigMap " + quote(ref.name)
		}
		for _, k := range ks {
			if _, seen := names[src.Prefix+k]; !seen {
				names[src.Prefix+k] = from
			}
		}
	}
	return names
}

// warnEnvFromNotAllowed says, once, which envFrom Secrets were not looked up because the
// allow-list does not let flow runs have them.
func (a *applier) warnEnvFromNotAllowed(list *allowList) {
	if len(a.envFromNotAllowed) == 0 {
		return
	}
	where := "the namespace has no allow-list, which this cluster's flowauth requires (--require-allow-list)"
	if list != nil {
		where = "the namespace's annotation " + list.annotation + " does not allow them"
	}
	quoted := make([]string, len(a.envFromNotAllowed))
	for i, s := range a.envFromNotAllowed {
		quoted[i] = quote(s)
	}
	a.result.warn(ReasonEnvFromNotChecked, "envFrom Secrets %s: flowauth does not look at their keys, as %s; a variable one of them sets may be replaced by flowauth's (env wins over envFrom): set the variable in env, or allow the Secret",
		some(quoted), where)
}

// warnEnvFromUnchecked says, once, how many envFrom sources were not looked up.
func (a *applier) warnEnvFromUnchecked() {
	if a.envFromUnchecked > 0 {
		a.result.warn(ReasonEnvFromNotChecked, "the pod's containers have %d envFrom sources beyond the %d whose keys flowauth checks; a variable one of them sets may be replaced by flowauth's (env wins over envFrom): name fewer sources, or set the variable in env",
			a.envFromUnchecked, MaxEnvFromSources)
	}
}
