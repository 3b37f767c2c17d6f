package admission

import (
	"context"
	"slices"

	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/flowauth/flowauth/pkg/mutate"
)

// LiveKeys reads key names from the API server, for what the key cache does not hold.
type LiveKeys interface {
	SecretKeys(ctx context.Context, namespace, name string) ([]string, bool, error)
	ConfigMapKeys(ctx context.Context, namespace, name string) ([]string, bool, error)
}

// decide runs mutate.Pod. With key lookup, anything the cache calls absent (a Secret, a key, an
// envFrom source) is read once from the API server and the decision is taken again with what
// was read, before any warning, Event or denial: a Secret applied with its Job, one outside the
// watch's selectors, or one the watch has not delivered yet is never reported missing. mutate
// stays pure: the reads happen here, between two calls.
func (h *PodMutator) decide(ctx context.Context, in mutate.Input) mutate.Result {
	if h.Keys == nil || h.Live == nil {
		return mutate.Pod(in)
	}
	seen := &recordedLookup{cache: h.Keys}
	in.Keys = seen
	res := mutate.Pod(in)
	confirm := seen.absent
	if hasReason(res, mutate.ReasonSecretKeyMissing) {
		confirm = append(confirm, seen.present...) // the cache may hold an older set of keys
	}
	if len(confirm) == 0 {
		return res
	}
	read := map[lookupRef]lookupResult{}
	for _, ref := range confirm {
		var r lookupResult
		var err error
		if ref.configMap {
			r.keys, r.found, err = h.Live.ConfigMapKeys(ctx, ref.namespace, ref.name)
		} else {
			r.keys, r.found, err = h.Live.SecretKeys(ctx, ref.namespace, ref.name)
		}
		h.Metrics.confirmation(ref.kind(), r.found, err)
		if err != nil {
			// The cache's answer stands: the pod is treated as it would be without the read.
			logf.FromContext(ctx).Error(err, "could not confirm what the key cache lacks; using the cache's answer", "kind", ref.kind(), "namespace", ref.namespace, "name", ref.name)
			continue
		}
		read[ref] = r
	}
	if len(read) == 0 {
		return res
	}
	in.Keys = confirmedLookup{cache: h.Keys, read: read}
	return mutate.Pod(in)
}

func hasReason(r mutate.Result, reason mutate.Reason) bool {
	has := func(f mutate.Finding) bool { return f.Reason == reason }
	return slices.ContainsFunc(r.Warnings, has) || slices.ContainsFunc(r.Denials, has)
}

type lookupRef struct {
	configMap       bool
	namespace, name string
}

func (r lookupRef) kind() string {
	if r.configMap {
		return "ConfigMap"
	}
	return "Secret"
}

type lookupResult struct {
	keys  []string
	found bool
}

// recordedLookup answers from the cache and remembers what it was asked, once each.
type recordedLookup struct {
	cache           mutate.KeyLookup
	absent, present []lookupRef
}

func (l *recordedLookup) SecretKeys(namespace, name string) ([]string, bool) {
	keys, found := l.cache.SecretKeys(namespace, name)
	l.record(lookupRef{namespace: namespace, name: name}, found)
	return keys, found
}

func (l *recordedLookup) ConfigMapKeys(namespace, name string) ([]string, bool) {
	keys, found := l.cache.ConfigMapKeys(namespace, name)
	l.record(lookupRef{configMap: true, namespace: namespace, name: name}, found)
	return keys, found
}

func (l *recordedLookup) record(ref lookupRef, found bool) {
	list := &l.absent
	if found {
		list = &l.present
	}
	if !slices.Contains(*list, ref) {
		*list = append(*list, ref)
	}
}

// confirmedLookup answers with what was read from the API server, and from the cache otherwise.
type confirmedLookup struct {
	cache mutate.KeyLookup
	read  map[lookupRef]lookupResult
}

func (l confirmedLookup) SecretKeys(namespace, name string) ([]string, bool) {
	if r, ok := l.read[lookupRef{namespace: namespace, name: name}]; ok {
		return r.keys, r.found
	}
	return l.cache.SecretKeys(namespace, name)
}

func (l confirmedLookup) ConfigMapKeys(namespace, name string) ([]string, bool) {
	if r, ok := l.read[lookupRef{configMap: true, namespace: namespace, name: name}]; ok {
		return r.keys, r.found
	}
	return l.cache.ConfigMapKeys(namespace, name)
}
