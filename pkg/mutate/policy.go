package mutate

import (
	"fmt"
	"slices"
	"strings"

	"github.com/flowauth/flowauth/pkg/secretmap"
)

// The namespace owner's allow-list (DESIGN.md §3: which Secrets a flow run may ask for is the
// namespace owner's decision, never the annotations' alone). It is read from the Namespace,
// which the Prefect users who fill a worker's job variables cannot change.
const (
	// AnnotationAllowedSecrets, on a Namespace, lists what its flow runs may receive: NAME (from
	// the secret map's default Secret), NAME=SECRET (from that Secret; repeat the name for
	// several), NAME=* (from any Secret of the namespace), or * (anything).
	AnnotationAllowedSecrets = "flowauth.io/allowed-secrets"
	// AllowedSecretsForPrefix + SERVICEACCOUNT, on a Namespace, is the list for the pods that
	// run as that ServiceAccount, in place of AnnotationAllowedSecrets.
	AllowedSecretsForPrefix = "allowed-secrets.flowauth.io/"
	// anySecret in an entry allows any Secret (NAME=*) or any name (*).
	anySecret = "*"
)

// allowList is one parsed allow-list annotation.
type allowList struct {
	// annotation is where it came from, for messages.
	annotation string
	all        bool
	// secrets maps a name to the Secrets it may come from; "" is the map's default Secret.
	secrets map[string][]string
}

// allowListFor finds the list that applies to the pod: its ServiceAccount's, else the
// namespace's; nil when the namespace has neither. Invalid entries are told (the namespace
// owner's mistake) and allow nothing.
func allowListFor(in Input, r *Result) *allowList {
	sa := in.Pod.Spec.ServiceAccountName
	if sa == "" {
		// The deprecated field alone: the API server copies it to serviceAccountName before
		// admission, so a manifest rendered by the plugin must be judged the same way.
		sa = in.Pod.Spec.DeprecatedServiceAccount
	}
	if sa == "" {
		sa = "default"
	}
	key := AllowedSecretsForPrefix + sa
	value, ok := in.NamespaceAnnotations[key]
	if !ok {
		key = AnnotationAllowedSecrets
		if value, ok = in.NamespaceAnnotations[key]; !ok {
			return nil
		}
	}
	list := &allowList{annotation: key, secrets: map[string][]string{}}
	items, total := splitList(value)
	if total > MaxDeclaredNames {
		r.warn(ReasonInvalidAllowList, "namespace annotation %s lists more than %d entries; only the first %d are read", key, MaxDeclaredNames, MaxDeclaredNames)
	}
	for _, item := range items {
		if item == anySecret {
			list.all = true
			continue
		}
		name, secret, _ := strings.Cut(item, "=")
		if err := secretmap.ValidateName(name); err != nil {
			r.warn(ReasonInvalidAllowList, "namespace annotation %s: entry %s: the name %v; it allows nothing", key, quote(item), err)
			continue
		}
		if secret != "" && secret != anySecret {
			if msgs := invalidSubdomain(secret); len(msgs) > 0 {
				r.warn(ReasonInvalidAllowList, "namespace annotation %s: entry %s: %s is not a Secret name (%s); it allows nothing", key, quote(item), quote(secret), strings.Join(msgs, "; "))
				continue
			}
		}
		list.secrets[name] = append(list.secrets[name], secret)
	}
	return list
}

// allows reports whether the list lets name come from secret (def is the map's default Secret).
func (l *allowList) allows(name, secret, def string) bool {
	if l.all {
		return true
	}
	for _, s := range l.secrets[name] {
		if s == anySecret || s == secret || (s == "" && secret == def) {
			return true
		}
	}
	return false
}

// namesExactly reports whether the list has the entry NAME=SECRET for exactly this Secret.
func (l *allowList) namesExactly(name, secret string) bool {
	return slices.Contains(l.secrets[name], secret)
}

// allowsSecret reports whether the list lets any name come from secret: whether flowauth may look
// at that Secret's keys for the pod (an envFrom source).
func (l *allowList) allowsSecret(secret string, m *secretmap.Map) bool {
	if l.all {
		return true
	}
	for name, secrets := range l.secrets {
		for _, s := range secrets {
			if s == anySecret || s == secret {
				return true
			}
			if s == "" {
				if e, _ := m.Resolve(name); e.SecretName == secret {
					return true
				}
			}
		}
	}
	return false
}

// describe says what the list allows, for a refusal.
func (l *allowList) describe(m *secretmap.Map) string {
	if len(l.secrets) == 0 {
		return "nothing"
	}
	var parts []string
	for name, secrets := range l.secrets {
		for _, s := range secrets {
			switch s {
			case "":
				e, _ := m.Resolve(name)
				parts = append(parts, fmt.Sprintf("%s from Secret %q", name, e.SecretName))
			case anySecret:
				parts = append(parts, name+" from any Secret")
			default:
				parts = append(parts, fmt.Sprintf("%s from Secret %q", name, s))
			}
		}
	}
	slices.Sort(parts)
	return some(parts)
}

// enforceAllowList keeps the names the namespace owner allows. A name the pod declares, or
// whose Secret the pod overrides, that is not allowed refuses the pod, with the rule that
// refused it; a namespace default that is not allowed is skipped with a warning (the owner set
// both). Without a list everything is allowed, unless in.RequireAllowList.
func enforceAllowList(in Input, list *allowList, podNames, names []string, overrides map[string]string, r *Result) []string {
	namespace := in.Namespace
	if namespace == "" {
		namespace = in.Pod.Namespace
	}
	if list == nil && !in.RequireAllowList {
		return names
	}
	kept := names[:0:0]
	for _, name := range names {
		entry, _ := in.Map.Resolve(name)
		secret := secretName(entry, overrides)
		_, overridden := overrides[name]
		fromPod := slices.Contains(podNames, name) || overridden
		switch {
		case list == nil && fromPod:
			r.deny(ReasonAllowListRequired, "namespace %q has no %s annotation, and this cluster's flowauth requires one (--require-allow-list): nothing may be injected there until a namespace administrator sets it, e.g. kubectl annotate namespace %s %s=%s",
				namespace, AnnotationAllowedSecrets, namespace, AnnotationAllowedSecrets, name)
			return nil
		case list == nil:
			r.warn(ReasonAllowListRequired, "namespace %q has no %s annotation, which this cluster's flowauth requires (--require-allow-list); its default %s is skipped", namespace, AnnotationAllowedSecrets, name)
		case list.allows(name, secret, entry.SecretName):
			kept = append(kept, name)
		case fromPod:
			how := "from its default Secret " + fmt.Sprintf("%q", secret)
			if overridden {
				how = fmt.Sprintf("from Secret %q (annotation %s%s)", secret, SecretOverridePrefix, name)
			}
			r.deny(ReasonNotAllowed, "namespace %q does not allow %s %s: its annotation %s allows %s. A namespace administrator decides what flow runs there may receive",
				namespace, name, how, list.annotation, list.describe(in.Map))
		default:
			r.warn(ReasonNotAllowed, "namespace %q: its default %s is not allowed by its annotation %s (which allows %s); skipped", namespace, name, list.annotation, list.describe(in.Map))
		}
	}
	return kept
}
