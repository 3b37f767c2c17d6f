package admission

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"golang.org/x/time/rate"

	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/flowauth/flowauth/pkg/mutate"
)

// LiveKeys reads key names from the API server, for what the key cache does not hold.
type LiveKeys interface {
	// Secret returns a Secret's key names, its type, and whether it exists.
	Secret(ctx context.Context, namespace, name string) (keys []string, secretType string, found bool, err error)
	ConfigMapKeys(ctx context.Context, namespace, name string) ([]string, bool, error)
}

// decide runs mutate.Pod. With key lookup, anything the cache calls absent (a Secret, a key, an
// envFrom source) is read once from the API server and the decision is taken again with what
// was read, before any warning, Event or denial: a Secret applied with its Job, one outside the
// watch's selectors, or one the watch has not delivered yet is never reported missing. mutate
// stays pure: the reads happen here, between two calls.
func (h *PodMutator) decide(ctx context.Context, in mutate.Input) mutate.Result {
	if in.Keys == nil || h.Live == nil {
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
	// One pod's reads are bounded, and each namespace's are paced: one tenant's pods cannot
	// spend the reads every other namespace's confirmations need.
	unconfirmed := max(0, len(confirm)-MaxConfirmations)
	confirm = confirm[:min(len(confirm), MaxConfirmations)]
	read := map[lookupRef]lookupResult{}
	for _, ref := range confirm {
		if !h.Confirmations.allow(ref.namespace) {
			h.Metrics.confirmationThrottled(ref.kind())
			unconfirmed++
			continue
		}
		var r lookupResult
		var err error
		if ref.configMap {
			r.keys, r.found, err = h.Live.ConfigMapKeys(ctx, ref.namespace, ref.name)
		} else {
			r.keys, r.secretType, r.found, err = h.Live.Secret(ctx, ref.namespace, ref.name)
		}
		h.Metrics.confirmation(ref.kind(), r.found, err)
		if err != nil {
			// The cache's answer stands: the pod is treated as it would be without the read.
			logf.FromContext(ctx).Error(errors.New(truncate(err.Error(), maxNote)), "could not confirm what the key cache lacks; using the cache's answer", "kind", ref.kind(), "namespace", logged(ref.namespace), "name", logged(ref.name))
			continue
		}
		read[ref] = r
	}
	if len(read) > 0 || unconfirmed > 0 {
		in.Keys = confirmedLookup{cache: h.Keys, read: read}
		if unconfirmed > 0 && in.Missing == mutate.MissingDeny {
			// What was not read may exist: the cache's "missing" must not refuse a pod that
			// would run (the rule of the confirmation), so this pod is warned, not refused.
			in.Missing = mutate.MissingWarn
		}
		res = mutate.Pod(in)
	}
	if unconfirmed > 0 && (hasReason(res, mutate.ReasonSecretNotFound) || hasReason(res, mutate.ReasonSecretKeyMissing)) {
		res.Warnings = append(res.Warnings, mutate.Finding{Reason: ReasonUnconfirmed, Message: fmt.Sprintf(
			"%d Secrets or ConfigMaps the key cache lacks were not read from the API server (at most %d a pod, and a namespace's reads are paced); what is said missing here is the cache's answer, so it is a warning even with --missing-secret=deny", unconfirmed, MaxConfirmations)})
	}
	return res
}

// ReasonUnconfirmed: some of what the key cache lacks was not read live (MaxConfirmations, or
// the namespace's pace).
const ReasonUnconfirmed mutate.Reason = "Unconfirmed"

// MaxConfirmations bounds the live reads one pod can cause.
const MaxConfirmations = 8

// FairLimiter paces live reads per namespace (a token bucket each), so that one namespace's
// pods cannot use up the webhook's API client (paced at 50 requests a second in all). Reads for
// namespaces the webhook does not serve share one small bucket. A nil FairLimiter allows all.
type FairLimiter struct {
	// PerNamespace and Burst are each namespace's pace.
	PerNamespace rate.Limit
	Burst        int
	mu           sync.Mutex
	namespaces   map[string]*rate.Limiter
	unserved     *rate.Limiter
}

// unservedReads and unservedBurst pace the reads of namespaces the webhook does not serve, all
// of them together.
const unservedReads, unservedBurst = 2, 5

// maxPacedNamespaces bounds the limiters kept: past it, those at rest (a full bucket, so the
// same as a new one) are dropped.
const maxPacedNamespaces = 4096

func (f *FairLimiter) allow(namespace string) bool {
	if f == nil {
		return true
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.namespaces == nil {
		f.namespaces = map[string]*rate.Limiter{}
	}
	l, ok := f.namespaces[namespace]
	if !ok {
		if len(f.namespaces) >= maxPacedNamespaces {
			for ns, l := range f.namespaces {
				if l.Tokens() >= float64(f.Burst) {
					delete(f.namespaces, ns)
				}
			}
		}
		l = rate.NewLimiter(f.PerNamespace, f.Burst)
		f.namespaces[namespace] = l
	}
	return l.Allow()
}

// allowUnserved paces reads for requests naming namespaces the webhook does not serve.
func (f *FairLimiter) allowUnserved() bool {
	if f == nil {
		return true
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.unserved == nil {
		// The API server never sends such a request; a namespace labelled a moment ago is
		// the only honest reason for one, and it is rare.
		f.unserved = rate.NewLimiter(unservedReads, unservedBurst)
	}
	return f.unserved.Allow()
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
	keys       []string
	secretType string
	found      bool
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

func (l *recordedLookup) SecretType(namespace, name string) string {
	return l.cache.SecretType(namespace, name)
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

func (l confirmedLookup) SecretType(namespace, name string) string {
	if r, ok := l.read[lookupRef{namespace: namespace, name: name}]; ok {
		return r.secretType
	}
	return l.cache.SecretType(namespace, name)
}

func (l confirmedLookup) ConfigMapKeys(namespace, name string) ([]string, bool) {
	if r, ok := l.read[lookupRef{configMap: true, namespace: namespace, name: name}]; ok {
		return r.keys, r.found
	}
	return l.cache.ConfigMapKeys(namespace, name)
}
