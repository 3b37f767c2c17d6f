package secretkeys

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unique"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	toolscache "k8s.io/client-go/tools/cache"
)

// keySet is an object's key names, sorted and joined by NUL (no key name can hold one), interned:
// the thousands of Secrets that share a shape ("ACCESS_KEY, SECRET_ACCESS_KEY", "token") share
// one string.
type keySet = unique.Handle[string]

func internKeys(keys []string) keySet {
	size := 0
	for _, k := range keys {
		size += len(k) + 1
	}
	if size > MaxKeyBytes {
		return oversized
	}
	slices.Sort(keys)
	return unique.Make(strings.Join(keys, "\x00"))
}

// MaxKeyBytes bounds the key names kept for one object (a Secret has a handful; a ConfigMap of
// config files a few hundred). An object with more is kept as oversized: the index answers that
// it does not know it, so a pod that names it has it read from the API server, and the object
// costs the index no more than a small one.
const MaxKeyBytes = 16 << 10

// oversized stands for the key names of an object past MaxKeyBytes. No real key set can equal
// it: key names never hold NUL, and it is one NUL.
var oversized = unique.Make("\x00")

// overBudget stands for the key names of an object that came when the index's key names had
// reached their total bound (Options.MaxTotalKeyBytes): like an oversized one it is kept as not
// known, and read from the API server when a pod names it. Two NULs: no real key set equals it.
var overBudget = unique.Make("\x00\x00")

// keyBytes is what an object's key names weigh against the total bound.
func keyBytes(h keySet) int64 {
	if h == oversized || h == overBudget {
		return 0
	}
	return int64(len(h.Value()))
}

// budget bounds the key names an index keeps, all its stores together. It counts what is held:
// each distinct set of key names once (objects of one shape share one interned string), so a
// cluster's thousands of Secrets of a few shapes weigh next to nothing, and only many distinct
// sets, what a tenant filling a namespace with objects of invented keys makes, reach the bound.
type budget struct {
	max  int64 // <= 0: no bound
	mu   sync.Mutex
	refs map[keySet]int
	used atomic.Int64
}

// take counts keys for one more object if they fit: free when another object holds the same.
func (b *budget) take(keys keySet) bool {
	if b == nil || b.max <= 0 || keys == oversized || keys == overBudget {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.refs[keys] > 0 {
		b.refs[keys]++
		return true
	}
	n := keyBytes(keys)
	if b.used.Load()+n > b.max {
		return false
	}
	if b.refs == nil {
		b.refs = map[keySet]int{}
	}
	b.refs[keys] = 1
	b.used.Add(n)
	return true
}

// release gives back one object's hold on keys.
func (b *budget) release(keys keySet) {
	if b == nil || b.max <= 0 || keys == oversized || keys == overBudget {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.refs[keys] {
	case 0:
	case 1:
		delete(b.refs, keys)
		b.used.Add(-keyBytes(keys))
	default:
		b.refs[keys]--
	}
}

func splitKeys(h keySet) []string {
	if v := h.Value(); v != "" {
		return strings.Split(v, "\x00")
	}
	return []string{}
}

// store is one watch's objects: "namespace/name" → key names, and nothing else. It is the only
// copy flowauth keeps of an object (no informer cache beside it): the reflector hands it each
// object as listed or watched, and it keeps the name and key names. It implements
// cache.ReflectorStore.
type store struct {
	mu      sync.RWMutex
	objects map[string]entry
	// budget is the index's total bound, shared by its stores; nil: none.
	budget *budget
	// generation counts lists: a list stamps what it puts with the next generation as it
	// decodes each page, and Replace then drops what it did not stamp. The one map is updated in
	// place, so neither a list nor a second map is ever held beside it.
	generation, listing uint32
	replaced            atomic.Bool
	lists               atomic.Int64
}

// entry is one object's key names and the list generation that last saw it.
type entry struct {
	keys       keySet
	generation uint32
}

var _ toolscache.ReflectorStore = (*store)(nil)

func newStore() *store { return &store{objects: map[string]entry{}} }

func (s *store) get(namespace, name string) ([]string, bool) {
	s.mu.RLock()
	e, ok := s.objects[namespace+"/"+name]
	s.mu.RUnlock()
	if !ok || e.keys == oversized || e.keys == overBudget {
		return nil, false
	}
	return splitKeys(e.keys), true
}

// oversizedCount is how many objects are kept as oversized.
func (s *store) oversizedCount() int { return s.count(oversized) }

// overBudgetCount is how many objects are kept as not known past the total bound.
func (s *store) overBudgetCount() int { return s.count(overBudget) }

func (s *store) count(marker keySet) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := 0
	for _, e := range s.objects {
		if e.keys == marker {
			n++
		}
	}
	return n
}

func (s *store) len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.objects)
}

// synced reports whether the first list has been stored.
func (s *store) synced() bool { return s.replaced.Load() }

// Add stores an object's key names; a watched Secret or ConfigMap is dropped right after.
func (s *store) Add(obj any) error {
	if id, keys, ok := keysOf(obj); ok {
		s.put(id, keys, 0)
	}
	return nil
}

// Update is Add: only the latest key names matter.
func (s *store) Update(obj any) error { return s.Add(obj) }

// Delete forgets an object.
func (s *store) Delete(obj any) error {
	if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	o, ok := obj.(metav1.Object)
	if !ok {
		return nil
	}
	id := o.GetNamespace() + "/" + o.GetName()
	s.mu.Lock()
	if e, had := s.objects[id]; had {
		s.budget.release(e.keys)
		delete(s.objects, id)
	}
	s.mu.Unlock()
	return nil
}

// beginList starts a list (the first sync, or a relist): what put stores until Replace is part
// of it. A list that fails and starts again keeps the same generation.
func (s *store) beginList() uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listing = s.generation + 1
	return s.listing
}

// put stores one object: a listed one with its list's generation, a watched one (generation
// 0) with the current generation.
func (s *store) put(id string, keys keySet, generation uint32) {
	s.mu.Lock()
	if generation == 0 {
		generation = s.generation
	}
	s.objects[id] = entry{keys: s.charge(id, keys), generation: generation}
	s.mu.Unlock()
}

// Replace ends a list (the reflector calls it once the list is complete): what the list put,
// and any items the reflector hands it (none from lister), make up the store; everything else
// is dropped.
func (s *store) Replace(items []any, _ string) error {
	s.mu.Lock()
	if s.listing != 0 {
		s.generation, s.listing = s.listing, 0
	} else {
		s.generation++
	}
	for _, item := range items {
		if id, keys, ok := keysOf(item); ok {
			s.objects[id] = entry{keys: s.charge(id, keys), generation: s.generation}
		}
	}
	for id, e := range s.objects {
		if e.generation != s.generation {
			s.budget.release(e.keys)
			delete(s.objects, id)
		}
	}
	s.mu.Unlock()
	s.replaced.Store(true)
	s.lists.Add(1)
	return nil
}

// charge counts the object's new key names against the budget in place of its old ones, and
// returns what to keep: the key names, or overBudget when they do not fit. Called with s.mu held.
func (s *store) charge(id string, keys keySet) keySet {
	if old, had := s.objects[id]; had {
		s.budget.release(old.keys)
	}
	if !s.budget.take(keys) {
		return overBudget
	}
	return keys
}

// Resync has nothing to do: there is no handler to replay to.
func (*store) Resync() error { return nil }

// keysOf reads the id and key names of a Secret or ConfigMap, whose values go with it when the
// caller drops it.
func keysOf(obj any) (string, keySet, bool) {
	switch o := obj.(type) {
	case *corev1.Secret:
		if restricted(string(o.Type)) {
			return "", keySet{}, false
		}
		return o.Namespace + "/" + o.Name, internKeys(appendKeys(appendKeys(nil, o.Data), o.StringData)), true
	case *corev1.ConfigMap:
		return o.Namespace + "/" + o.Name, internKeys(appendKeys(appendKeys(nil, o.Data), o.BinaryData)), true
	}
	return "", keySet{}, false
}

func appendKeys[V any](keys []string, m map[string]V) []string {
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}

// objectList is what the reflector's list returns: the list's resourceVersion, for the watch
// that follows. Its objects went into the store page by page (lister.ListWithContext).
type objectList struct {
	metav1.ListMeta
	Items []runtime.Object
}

func (*objectList) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }
func (l *objectList) DeepCopyObject() runtime.Object {
	c := *l
	c.Items = slices.Clone(l.Items)
	return &c
}
