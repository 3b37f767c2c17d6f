// Package secretkeys knows which keys the Secrets and ConfigMaps of a cluster have, and nothing
// else: every object is cut down to its name and key names before the informer stores it, so no
// value is ever held in memory past the decode of a watch event (DESIGN.md §3, "Knowing which
// keys exist"). mutate reads it through the small mutate.KeyLookup interface.
package secretkeys

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flowauth/flowauth/pkg/mutate"
)

// StripValues is the informers' transform: a Secret or ConfigMap becomes a new object with its
// name, namespace, UID, resourceVersion and key names (values nil). Everything else is dropped,
// annotations included, because kubectl's last-applied-configuration annotation holds a copy of
// the data.
func StripValues(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Secret:
		keys := make(map[string][]byte, len(o.Data)+len(o.StringData))
		for k := range o.Data {
			keys[k] = nil
		}
		for k := range o.StringData {
			keys[k] = nil
		}
		return &corev1.Secret{ObjectMeta: skeleton(o.ObjectMeta), Type: o.Type, Data: keys}, nil
	case *corev1.ConfigMap:
		keys := make(map[string]string, len(o.Data)+len(o.BinaryData))
		for k := range o.Data {
			keys[k] = ""
		}
		for k := range o.BinaryData {
			keys[k] = ""
		}
		return &corev1.ConfigMap{ObjectMeta: skeleton(o.ObjectMeta), Data: keys}, nil
	}
	return obj, nil
}

func skeleton(m metav1.ObjectMeta) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion}
}

// CacheOptions adds what the manager's cache needs for this package: the transform on Secrets
// and ConfigMaps, and, when namespaces is not empty, informers limited to those namespaces.
func CacheOptions(opts cache.Options, namespaces []string) cache.Options {
	if opts.ByObject == nil {
		opts.ByObject = map[client.Object]cache.ByObject{}
	}
	var scoped map[string]cache.Config
	if len(namespaces) > 0 {
		scoped = map[string]cache.Config{}
		for _, ns := range namespaces {
			scoped[ns] = cache.Config{}
		}
	}
	for _, obj := range []client.Object{&corev1.Secret{}, &corev1.ConfigMap{}} {
		opts.ByObject[obj] = cache.ByObject{Transform: StripValues, Namespaces: scoped, UnsafeDisableDeepCopy: new(true)}
	}
	return opts
}

// Index maps namespace/name to sorted key names for Secrets and ConfigMaps.
type Index struct {
	secrets, configMaps *keyIndex
}

var _ mutate.KeyLookup = (*Index)(nil)

// NewIndex returns an empty index; Watch fills it from a cache.
func NewIndex() *Index {
	return &Index{secrets: newKeyIndex(), configMaps: newKeyIndex()}
}

// SecretKeys implements mutate.KeyLookup.
func (ix *Index) SecretKeys(namespace, name string) ([]string, bool) {
	return ix.secrets.get(namespace, name)
}

// ConfigMapKeys implements mutate.KeyLookup.
func (ix *Index) ConfigMapKeys(namespace, name string) ([]string, bool) {
	return ix.configMaps.get(namespace, name)
}

// Len returns how many Secrets and ConfigMaps are indexed.
func (ix *Index) Len() (secrets, configMaps int) {
	return ix.secrets.len(), ix.configMaps.len()
}

// Watch starts the Secret and ConfigMap informers of c (their transform must be StripValues:
// see CacheOptions) and keeps the index current. It returns a function telling whether both
// informers have synced, for readiness.
func (ix *Index) Watch(ctx context.Context, c cache.Cache) (synced func() bool, err error) {
	var checks []func() bool
	for _, w := range []struct {
		obj   client.Object
		index *keyIndex
	}{{&corev1.Secret{}, ix.secrets}, {&corev1.ConfigMap{}, ix.configMaps}} {
		inf, err := c.GetInformer(ctx, w.obj)
		if err != nil {
			return nil, fmt.Errorf("watching %T: %w", w.obj, err)
		}
		if _, err := inf.AddEventHandler(w.index.handler()); err != nil {
			return nil, err
		}
		checks = append(checks, inf.HasSynced)
	}
	return func() bool {
		for _, ok := range checks {
			if !ok() {
				return false
			}
		}
		return true
	}, nil
}

// Collector exports the index's size and sync state as Prometheus gauges.
func (ix *Index) Collector(synced func() bool) prometheus.Collector {
	return &collector{ix: ix, synced: synced,
		objects: prometheus.NewDesc("flowauth_key_cache_objects", "Secrets and ConfigMaps whose key names flowauth knows (--secret-lookup=keys).", []string{"kind"}, nil),
		sync:    prometheus.NewDesc("flowauth_key_cache_synced", "1 once the Secret and ConfigMap informers have synced.", nil, nil),
	}
}

type collector struct {
	ix            *Index
	synced        func() bool
	objects, sync *prometheus.Desc
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) { ch <- c.objects; ch <- c.sync }

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s, cm := c.ix.Len()
	ch <- prometheus.MustNewConstMetric(c.objects, prometheus.GaugeValue, float64(s), "Secret")
	ch <- prometheus.MustNewConstMetric(c.objects, prometheus.GaugeValue, float64(cm), "ConfigMap")
	v := 0.0
	if c.synced != nil && c.synced() {
		v = 1
	}
	ch <- prometheus.MustNewConstMetric(c.sync, prometheus.GaugeValue, v)
}

// keyIndex is one kind's namespace/name → sorted key names.
type keyIndex struct {
	mu   sync.RWMutex
	keys map[string][]string
}

func newKeyIndex() *keyIndex { return &keyIndex{keys: map[string][]string{}} }

func (k *keyIndex) get(namespace, name string) ([]string, bool) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	keys, ok := k.keys[namespace+"/"+name]
	return keys, ok
}

func (k *keyIndex) len() int {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return len(k.keys)
}

func (k *keyIndex) set(obj any) {
	var id string
	var keys []string
	switch o := obj.(type) {
	case *corev1.Secret:
		id = o.Namespace + "/" + o.Name
		for key := range o.Data {
			keys = append(keys, key)
		}
	case *corev1.ConfigMap:
		id = o.Namespace + "/" + o.Name
		for key := range o.Data {
			keys = append(keys, key)
		}
	default:
		return
	}
	slices.Sort(keys)
	k.mu.Lock()
	defer k.mu.Unlock()
	k.keys[id] = keys
}

func (k *keyIndex) remove(obj any) {
	if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	o, ok := obj.(metav1.Object)
	if !ok {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.keys, o.GetNamespace()+"/"+o.GetName())
}

func (k *keyIndex) handler() toolscache.ResourceEventHandler {
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { k.set(obj) },
		UpdateFunc: func(_, obj any) { k.set(obj) },
		DeleteFunc: k.remove,
	}
}
