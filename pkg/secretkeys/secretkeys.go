// Package secretkeys knows which keys the Secrets and ConfigMaps of a cluster have, and nothing
// else (DESIGN.md §3, "Knowing which keys exist"). mutate reads it through the small
// mutate.KeyLookup interface.
//
// It is built for clusters with tens of thousands of Secrets, some of them Helm releases of up
// to 1 MiB (docs/large-clusters.md):
//   - Every list is paged and decoded as it streams (decodeList): values are skipped in the
//     decoder's window, never held, and each object goes into the index as it is decoded, so a
//     list costs the index plus one object, whether or not the API server would stream
//     (WatchList): the client never asks it to, so both behave alike.
//   - The watches filter on the server: by default no Helm release, service-account token or
//     image-pull Secret, and no Helm ConfigMap, is ever sent (DefaultSecretFieldSelector,
//     DefaultConfigMapLabelSelector).
//   - One copy per object: the reflector's store is the index itself, "namespace/name" → an
//     interned string of key names (about 150 bytes of heap an object, 250 of RSS: see
//     docs/large-clusters.md), with no informer cache beside it.
//
// What the watch has not seen (a Secret created a moment ago, or one outside the selectors) is
// read from the API server before anything is called missing: see Live.
package secretkeys

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/flowauth/flowauth/pkg/mutate"
)

// DefaultSecretFieldSelector keeps out of the watch the Secret types that cannot hold a flow
// run's credentials: Helm's release records (up to 1 MiB each, one per revision of every
// release), service-account tokens, image-pull credentials and bootstrap tokens. A Secret of
// these types that a flow run does declare is still found, by a live read (Live).
const DefaultSecretFieldSelector = "type!=helm.sh/release.v1,type!=kubernetes.io/service-account-token," +
	"type!=kubernetes.io/dockerconfigjson,type!=kubernetes.io/dockercfg,type!=bootstrap.kubernetes.io/token"

// DefaultConfigMapLabelSelector keeps Helm's release records out of the ConfigMap watch (Helm's
// configmap storage labels them owner=helm; ConfigMaps have no type to select on).
const DefaultConfigMapLabelSelector = "owner!=helm"

// DefaultPageSize is the number of objects the API server sends per list page.
const DefaultPageSize = 500

// Options says what to watch.
type Options struct {
	// Namespaces limits the watches to these namespaces; empty watches the whole cluster.
	Namespaces []string
	// SecretFieldSelector and SecretLabelSelector select the Secrets watched (on the server).
	SecretFieldSelector, SecretLabelSelector string
	// ConfigMapLabelSelector selects the ConfigMaps watched (on the server).
	ConfigMapLabelSelector string
	// PageSize is the list page size; 0 means DefaultPageSize.
	PageSize int64
	// MaxTotalKeyBytes bounds the key names kept for all objects together (each object's are
	// already at most MaxKeyBytes): past it, objects are kept as not known and read from the
	// API server when a pod names one. 0: DefaultMaxTotalKeyBytes; negative: no bound.
	MaxTotalKeyBytes int64
}

// DefaultMaxTotalKeyBytes bounds the index's key names, each distinct set counted once: a
// cluster's Secrets and ConfigMaps come in few shapes (the 60,000 objects of
// docs/large-clusters.md hold a few KiB of distinct key names), while 8,000 ConfigMaps of 16 KiB
// of distinct key names, which anyone who can create ConfigMaps in one namespace can make with a
// cluster-wide watch, would hold 128 MiB. At 2 MiB such a flood lifts the webhook's peak RSS by
// 13.5 MiB (make hostile; 17.9 at 4 MiB, 19.9 at 8): decoding the watched objects costs the rest.
const DefaultMaxTotalKeyBytes = 2 << 20

// Validate checks the selectors, so a typo stops the binary at start and names the selector.
func (o Options) Validate() error {
	if _, err := fields.ParseSelector(o.SecretFieldSelector); err != nil {
		return fmt.Errorf("field selector of Secrets %q: %w", o.SecretFieldSelector, err)
	}
	if _, err := labels.Parse(o.SecretLabelSelector); err != nil {
		return fmt.Errorf("label selector of Secrets %q: %w", o.SecretLabelSelector, err)
	}
	if _, err := labels.Parse(o.ConfigMapLabelSelector); err != nil {
		return fmt.Errorf("ConfigMap label selector %q: %w", o.ConfigMapLabelSelector, err)
	}
	return nil
}

// Index maps namespace/name to sorted key names for Secrets and ConfigMaps.
type Index struct {
	secrets, configMaps kindIndex
	budget              *budget
}

var _ mutate.KeyLookup = (*Index)(nil)

// kindIndex is one kind's stores: one for the whole cluster (key "") or one per namespace.
type kindIndex map[string]*store

func (k kindIndex) get(namespace, name string) ([]string, bool) {
	s := k[""]
	if s == nil {
		s = k[namespace]
	}
	if s == nil {
		return nil, false
	}
	return s.get(namespace, name)
}

func (k kindIndex) len() int {
	n := 0
	for _, s := range k {
		n += s.len()
	}
	return n
}

func (k kindIndex) oversized() int {
	n := 0
	for _, s := range k {
		n += s.oversizedCount()
	}
	return n
}

func (k kindIndex) overBudget() int {
	n := 0
	for _, s := range k {
		n += s.overBudgetCount()
	}
	return n
}

func (k kindIndex) lists() int64 {
	var n int64
	for _, s := range k {
		n += s.lists.Load()
	}
	return n
}

func (k kindIndex) synced() bool {
	for _, s := range k {
		if !s.synced() {
			return false
		}
	}
	return true
}

// SecretKeys implements mutate.KeyLookup.
func (ix *Index) SecretKeys(namespace, name string) ([]string, bool) {
	return ix.secrets.get(namespace, name)
}

// SecretType implements mutate.KeyLookup: "" for every Secret, as the index holds none of the
// restricted types (those are read live).
func (ix *Index) SecretType(string, string) string { return "" }

// ConfigMapKeys implements mutate.KeyLookup.
func (ix *Index) ConfigMapKeys(namespace, name string) ([]string, bool) {
	return ix.configMaps.get(namespace, name)
}

// Len returns how many Secrets and ConfigMaps are indexed.
func (ix *Index) Len() (secrets, configMaps int) {
	return ix.secrets.len(), ix.configMaps.len()
}

// Lists counts the complete lists stored: the first sync, then one per relist (after a watch
// expired or the API server restarted).
func (ix *Index) Lists() int64 { return ix.secrets.lists() + ix.configMaps.lists() }

// Synced reports whether every watch has stored its first list: before that, every declared
// Secret would look missing.
func (ix *Index) Synced() bool { return ix.secrets.synced() && ix.configMaps.synced() }

// Watch validates o, starts the watches (client-go reflectors, one per kind and namespace) and
// returns the index they keep current until ctx ends. It does not wait for the first sync: see
// Synced.
func Watch(ctx context.Context, cs kubernetes.Interface, o Options) (*Index, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.PageSize <= 0 {
		o.PageSize = DefaultPageSize
	}
	namespaces := o.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	if o.MaxTotalKeyBytes == 0 {
		o.MaxTotalKeyBytes = DefaultMaxTotalKeyBytes
	}
	ix := &Index{secrets: kindIndex{}, configMaps: kindIndex{}, budget: &budget{max: o.MaxTotalKeyBytes}}
	rc := cs.CoreV1().RESTClient()
	for _, ns := range namespaces {
		ix.secrets[ns], ix.configMaps[ns] = newStore(), newStore()
		ix.secrets[ns].budget, ix.configMaps[ns].budget = ix.budget, ix.budget
		secrets := &lister{store: ix.secrets[ns], rest: rc, resource: "secrets", namespace: ns, fieldSelector: o.SecretFieldSelector, labelSelector: o.SecretLabelSelector, pageSize: o.PageSize,
			watch: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
				return cs.CoreV1().Secrets(ns).Watch(ctx, opts)
			}}
		configMaps := &lister{store: ix.configMaps[ns], rest: rc, resource: "configmaps", namespace: ns, labelSelector: o.ConfigMapLabelSelector, pageSize: o.PageSize,
			watch: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
				return cs.CoreV1().ConfigMaps(ns).Watch(ctx, opts)
			}}
		for _, w := range []struct {
			lw       *lister
			expected runtime.Object
		}{{secrets, &corev1.Secret{}}, {configMaps, &corev1.ConfigMap{}}} {
			r := toolscache.NewReflectorWithOptions(w.lw, w.expected, w.lw.store, toolscache.ReflectorOptions{
				Name: "flowauth key names of " + w.lw.resource + " in " + nsName(ns),
			})
			go r.RunWithContext(ctx)
		}
	}
	return ix, nil
}

func nsName(ns string) string {
	if ns == "" {
		return "all namespaces"
	}
	return "namespace " + ns
}

// lister lists and watches one kind in one namespace (or all) for a reflector. Its list ignores
// the reflector's options: it always pages through a consistent read (resourceVersion ""),
// because the reflector's first list asks for resourceVersion 0, which the API server answers
// from its watch cache in one piece whatever the page size, and client-go's pager joins pages
// before a transform could run (cert-manager's "filtered caching" design says the same).
type lister struct {
	// store receives the list's objects page by page; the list returned to the reflector is empty.
	store                        *store
	rest                         rest.Interface
	resource, namespace          string
	fieldSelector, labelSelector string
	pageSize                     int64
	watch                        func(context.Context, metav1.ListOptions) (watch.Interface, error)
}

// IsWatchListSemanticsUnSupported keeps the reflector from streaming the initial list (WatchList):
// the stream delivers whole objects into a temporary store before they could be stripped.
// Paged lists cost the same whether the server could stream or not.
func (*lister) IsWatchListSemanticsUnSupported() bool { return true }

// restartsOnExpiry bounds how often a paged list restarts because its continue token expired
// (the pages took longer than the API server keeps a snapshot, about 5 minutes).
const restartsOnExpiry = 3

func (l *lister) ListWithContext(ctx context.Context, _ metav1.ListOptions) (runtime.Object, error) {
	generation := l.store.beginList()
	for attempt := 0; ; attempt++ {
		out := &objectList{}
		opts := metav1.ListOptions{Limit: l.pageSize, FieldSelector: l.fieldSelector, LabelSelector: l.labelSelector}
		for {
			meta, err := l.page(ctx, opts, func(it item) {
				if restricted(it.secretType) {
					return
				}
				l.store.put(it.namespace+"/"+it.name, internKeys(it.keys), generation)
			})
			if apierrors.IsResourceExpired(err) && opts.Continue != "" && attempt < restartsOnExpiry {
				break
			}
			if err != nil {
				return nil, err
			}
			out.ResourceVersion = meta.ResourceVersion
			if meta.Continue == "" {
				return out, nil
			}
			opts.Continue = meta.Continue
		}
	}
}

func (l *lister) WatchWithContext(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	opts.FieldSelector, opts.LabelSelector = l.fieldSelector, l.labelSelector
	return l.watch(ctx, opts)
}

// List and Watch are the reflector's older interface; it calls the WithContext forms.
func (l *lister) List(opts metav1.ListOptions) (runtime.Object, error) {
	return l.ListWithContext(context.Background(), opts)
}

func (l *lister) Watch(opts metav1.ListOptions) (watch.Interface, error) {
	return l.WatchWithContext(context.Background(), opts)
}

// page asks for one page as JSON and decodes it one object at a time.
func (l *lister) page(ctx context.Context, opts metav1.ListOptions, each func(item)) (listMeta, error) {
	return listPage(ctx, l.rest, l.resource, l.namespace, opts, each)
}

func listPage(ctx context.Context, rc rest.Interface, resource, namespace string, opts metav1.ListOptions, each func(item)) (listMeta, error) {
	body, err := rc.Get().Namespace(namespace).Resource(resource).VersionedParams(&opts, scheme.ParameterCodec).
		SetHeader("Accept", "application/json").Stream(ctx)
	if err != nil {
		return listMeta{}, err
	}
	defer func() { _ = body.Close() }()
	meta, err := decodeList(body, each)
	if err != nil {
		return meta, fmt.Errorf("listing %s in %s: %w", resource, nsName(namespace), err)
	}
	_, _ = io.Copy(io.Discard, body)
	return meta, nil
}

// Live reads one Secret's or ConfigMap's key names from the API server, for what the index does
// not hold. It lists with a field selector on the name, so it needs the list verb that key
// lookup has anyway, no get; values are dropped as the one object is decoded.
type Live struct {
	rest rest.Interface
	// Timeout bounds one read; the admission's own deadline bounds it too.
	Timeout time.Duration
}

// NewLive reads through cs.
func NewLive(cs kubernetes.Interface, timeout time.Duration) *Live {
	return &Live{rest: cs.CoreV1().RESTClient(), Timeout: timeout}
}

// SecretKeys returns the Secret's key names, sorted, and whether it exists.
func (l *Live) SecretKeys(ctx context.Context, namespace, name string) ([]string, bool, error) {
	keys, _, found, err := l.Secret(ctx, namespace, name)
	return keys, found, err
}

// Secret returns the Secret's key names, sorted, its type, and whether it exists.
func (l *Live) Secret(ctx context.Context, namespace, name string) (keys []string, secretType string, found bool, err error) {
	return l.keys(ctx, "secrets", namespace, name)
}

// ConfigMapKeys does the same for a ConfigMap.
func (l *Live) ConfigMapKeys(ctx context.Context, namespace, name string) ([]string, bool, error) {
	keys, _, found, err := l.keys(ctx, "configmaps", namespace, name)
	return keys, found, err
}

func (l *Live) keys(ctx context.Context, resource, namespace, name string) ([]string, string, bool, error) {
	if l.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, l.Timeout)
		defer cancel()
	}
	var keys []string
	var secretType string
	found := false
	opts := metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String()}
	_, err := listPage(ctx, l.rest, resource, namespace, opts, func(it item) {
		if it.name == name {
			keys, secretType, found = it.keys, it.secretType, true
		}
	})
	if err != nil {
		return nil, "", false, err
	}
	slices.Sort(keys)
	return keys, secretType, found, nil
}

// restricted tells whether a Secret is of a type the index never holds (mutate's
// RestrictedSecretTypes): whatever the watch's selectors, such a Secret is read live when a pod
// names it, so its type is known when it matters.
func restricted(secretType string) bool {
	return slices.Contains(mutate.RestrictedSecretTypes, secretType)
}

// Collector exports the index's size and sync state as Prometheus gauges.
func (ix *Index) Collector() prometheus.Collector {
	return &collector{ix: ix,
		objects:    prometheus.NewDesc("flowauth_key_cache_objects", "Secrets and ConfigMaps whose key names flowauth knows (--secret-lookup=keys).", []string{"kind"}, nil),
		sync:       prometheus.NewDesc("flowauth_key_cache_synced", "1 once the Secret and ConfigMap watches have stored their first list.", nil, nil),
		lists:      prometheus.NewDesc("flowauth_key_cache_lists_total", "Complete lists of Secrets and ConfigMaps stored: the first sync, then one per relist (a watch expired, the API server restarted).", nil, nil),
		oversized:  prometheus.NewDesc("flowauth_key_cache_oversized_objects", "Secrets and ConfigMaps whose key names exceed 16 KiB: kept without them, and read from the API server when a pod names one.", []string{"kind"}, nil),
		overBudget: prometheus.NewDesc("flowauth_key_cache_over_budget_objects", "Secrets and ConfigMaps kept without their key names because the cache's key names had reached their total bound (--key-cache-max-bytes): read from the API server when a pod names one.", []string{"kind"}, nil),
		keyBytes:   prometheus.NewDesc("flowauth_key_cache_key_bytes", "Bytes of key names the cache holds, each distinct set of key names counted once, against its bound (--key-cache-max-bytes).", nil, nil),
	}
}

type collector struct {
	ix                                          *Index
	objects, sync, lists, oversized, overBudget *prometheus.Desc
	keyBytes                                    *prometheus.Desc
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.objects
	ch <- c.sync
	ch <- c.lists
	ch <- c.oversized
	ch <- c.overBudget
	ch <- c.keyBytes
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s, cm := c.ix.Len()
	ch <- prometheus.MustNewConstMetric(c.objects, prometheus.GaugeValue, float64(s), "Secret")
	ch <- prometheus.MustNewConstMetric(c.objects, prometheus.GaugeValue, float64(cm), "ConfigMap")
	v := 0.0
	if c.ix.Synced() {
		v = 1
	}
	ch <- prometheus.MustNewConstMetric(c.sync, prometheus.GaugeValue, v)
	ch <- prometheus.MustNewConstMetric(c.lists, prometheus.CounterValue, float64(c.ix.Lists()))
	ch <- prometheus.MustNewConstMetric(c.oversized, prometheus.GaugeValue, float64(c.ix.secrets.oversized()), "Secret")
	ch <- prometheus.MustNewConstMetric(c.oversized, prometheus.GaugeValue, float64(c.ix.configMaps.oversized()), "ConfigMap")
	ch <- prometheus.MustNewConstMetric(c.overBudget, prometheus.GaugeValue, float64(c.ix.secrets.overBudget()), "Secret")
	ch <- prometheus.MustNewConstMetric(c.overBudget, prometheus.GaugeValue, float64(c.ix.configMaps.overBudget()), "ConfigMap")
	var used int64
	if c.ix.budget != nil {
		used = c.ix.budget.used.Load()
	}
	ch <- prometheus.MustNewConstMetric(c.keyBytes, prometheus.GaugeValue, float64(used))
}
