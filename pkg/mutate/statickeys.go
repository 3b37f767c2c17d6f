package mutate

import "slices"

// StaticKeys is a fixed KeyLookup for one namespace, as written in a golden case's keys.yaml:
// Secret and ConfigMap names with their key names, and the missing-secret policy.
type StaticKeys struct {
	MissingSecret MissingPolicy       `json:"missingSecret"`
	Secrets       map[string][]string `json:"secrets"`
	ConfigMaps    map[string][]string `json:"configMaps"`
	// Types are the Secrets' types, where known.
	Types map[string]string `json:"types"`
}

// SecretType implements KeyLookup; the namespace is ignored.
func (k *StaticKeys) SecretType(_, name string) string { return k.Types[name] }

// SecretKeys implements KeyLookup; the namespace is ignored.
func (k *StaticKeys) SecretKeys(_, name string) ([]string, bool) {
	keys, ok := k.Secrets[name]
	return sorted(keys), ok
}

// ConfigMapKeys implements KeyLookup; the namespace is ignored.
func (k *StaticKeys) ConfigMapKeys(_, name string) ([]string, bool) {
	keys, ok := k.ConfigMaps[name]
	return sorted(keys), ok
}

func sorted(keys []string) []string {
	out := slices.Clone(keys)
	slices.Sort(out)
	return out
}

// StaticNamespace is a golden case's namespace.yaml: the Namespace's annotations (its owner's
// allow-lists) and whether the webhook requires an allow-list.
type StaticNamespace struct {
	Annotations      map[string]string `json:"annotations"`
	RequireAllowList bool              `json:"requireAllowList"`
}
