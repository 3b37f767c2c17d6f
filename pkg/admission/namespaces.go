package admission

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flowauth/flowauth/pkg/mutate"
)

// Namespace is what flowauth reads of a Namespace: its labels (is it opted in) and its
// annotations (its defaults and its owner's allow-lists). Nothing else of it is kept.
type Namespace struct {
	// Found is false for a namespace that neither the cache nor the API server holds.
	Found       bool
	Labels      map[string]string
	Annotations map[string]string
}

// Defaults is the namespace's flowauth.io/secrets annotation ("" if none).
func (n Namespace) Defaults() string { return n.Annotations[mutate.AnnotationSecrets] }

// Namespaces gives the Namespace of a request.
type Namespaces interface {
	Namespace(ctx context.Context, name string) (Namespace, error)
}

// LiveNamespaces is a Namespaces from a cache that can also read one namespace from the API
// server (CachedNamespaces does), for what may have changed a moment ago.
type LiveNamespaces interface {
	Namespaces
	LiveNamespace(ctx context.Context, name string) (Namespace, error)
}

// namespaceMeta is an empty Namespace in its metadata-only form.
func namespaceMeta() *metav1.PartialObjectMetadata {
	ns := &metav1.PartialObjectMetadata{}
	ns.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	return ns
}

// WatchNamespaces registers a metadata-only Namespace informer with the cache (flowauth reads
// labels and annotations of theirs, nothing else) and returns the reader over it. Call it
// before the cache starts, so readiness can wait for its sync.
func WatchNamespaces(ctx context.Context, c cache.Cache) (CachedNamespaces, error) {
	if _, err := c.GetInformer(ctx, namespaceMeta()); err != nil {
		return CachedNamespaces{}, fmt.Errorf("watching namespaces: %w", err)
	}
	return CachedNamespaces{Reader: c}, nil
}

var _ LiveNamespaces = CachedNamespaces{}

// CachedNamespaces reads Namespaces from a controller-runtime cache that holds them as metadata
// only (PartialObjectMetadata).
type CachedNamespaces struct {
	Reader client.Reader
	// Live, when set, is read for a namespace the cache lacks (see also LiveNamespace): the
	// manager's API reader.
	Live client.Reader
}

// Namespace returns the namespace from the cache; one the cache lacks is not found. Whether it
// is worth a read from the API server (a namespace created in the same `kubectl apply` as the
// flow run) is the handler's decision, within a budget: a review naming a namespace that does
// not exist must cost no read of its own.
func (c CachedNamespaces) Namespace(ctx context.Context, name string) (Namespace, error) {
	ns := namespaceMeta()
	err := c.Reader.Get(ctx, client.ObjectKey{Name: name}, ns)
	switch {
	case apierrors.IsNotFound(err):
		return Namespace{}, nil
	case err != nil:
		return Namespace{}, err
	}
	return Namespace{Found: true, Labels: ns.Labels, Annotations: ns.Annotations}, nil
}

// LiveNamespace reads the namespace from the API server; with no Live reader, not found (the
// cache's answer stands). The handler calls it for a namespace the cache lacks (created a
// moment ago), when a Prefect flow-run pod that declares nothing finds no defaults in the cache
// (its namespace's defaults may have been set a moment ago), and when a namespace the cache
// holds is not opted in (it may have been labelled a moment ago): each within a budget (see
// PodMutator.namespace). A pod that declares names of its own is not held up for a read: if its
// namespace's defaults were set within the watch's delay, a few milliseconds, it gets its own
// names only, and its flowauth.io/status says which.
func (c CachedNamespaces) LiveNamespace(ctx context.Context, name string) (Namespace, error) {
	if c.Live == nil {
		return Namespace{}, nil
	}
	ns := namespaceMeta()
	if err := c.Live.Get(ctx, client.ObjectKey{Name: name}, ns); err != nil {
		if apierrors.IsNotFound(err) {
			return Namespace{}, nil
		}
		return Namespace{}, err
	}
	return Namespace{Found: true, Labels: ns.Labels, Annotations: ns.Annotations}, nil
}
