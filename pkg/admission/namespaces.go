package admission

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flowauth/flowauth/pkg/mutate"
)

// namespaceMeta is an empty Namespace in its metadata-only form.
func namespaceMeta() *metav1.PartialObjectMetadata {
	ns := &metav1.PartialObjectMetadata{}
	ns.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	return ns
}

// WatchNamespaces registers a metadata-only Namespace informer with the cache (flowauth reads one
// annotation of theirs, nothing else) and returns the defaults reader over it. Call it before the
// cache starts, so readiness can wait for its sync.
func WatchNamespaces(ctx context.Context, c cache.Cache) (CachedNamespaces, error) {
	if _, err := c.GetInformer(ctx, namespaceMeta()); err != nil {
		return CachedNamespaces{}, fmt.Errorf("watching namespaces: %w", err)
	}
	return CachedNamespaces{Reader: c}, nil
}

// freshNamespace is how young a Namespace must be for empty cached defaults to be read again
// from the API server: one created with its annotation in the same `kubectl apply` as a flow run
// may reach the cache after the flow run's pod reaches flowauth.
const freshNamespace = 2 * time.Minute

// CachedNamespaces reads namespace defaults from a controller-runtime cache that holds Namespaces
// as metadata only (PartialObjectMetadata): flowauth needs their annotations, nothing else.
type CachedNamespaces struct {
	Reader client.Reader
	// Live, when set, is read for a namespace the cache lacks, or whose cached defaults are
	// empty while it is fresh (see LiveDefaults): the manager's API reader.
	Live client.Reader
	// Now is the clock for freshNamespace; nil is time.Now.
	Now func() time.Time
}

// Defaults returns the namespace's flowauth.io/secrets annotation; "" for a namespace that
// neither the cache nor the API server holds. A namespace the cache lacks, or a fresh one
// without defaults in the cache, is read from the API server (Live).
func (c CachedNamespaces) Defaults(ctx context.Context, namespace string) (string, error) {
	ns := namespaceMeta()
	err := c.Reader.Get(ctx, client.ObjectKey{Name: namespace}, ns)
	switch {
	case apierrors.IsNotFound(err):
		return c.LiveDefaults(ctx, namespace)
	case err != nil:
		return "", err
	}
	defaults := ns.Annotations[mutate.AnnotationSecrets]
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	if defaults == "" && now().Sub(ns.CreationTimestamp.Time) < freshNamespace {
		return c.LiveDefaults(ctx, namespace)
	}
	return defaults, nil
}

// LiveDefaults reads the annotation from the API server; with no Live reader, "" (the cache's
// answer stands). The handler also calls it when a Prefect flow-run pod that declares nothing
// finds no defaults in the cache: its namespace's defaults may have been set a moment ago.
func (c CachedNamespaces) LiveDefaults(ctx context.Context, namespace string) (string, error) {
	if c.Live == nil {
		return "", nil
	}
	ns := namespaceMeta()
	if err := c.Live.Get(ctx, client.ObjectKey{Name: namespace}, ns); err != nil {
		if apierrors.IsNotFound(err) {
			return "", nil
		}
		return "", err
	}
	return ns.Annotations[mutate.AnnotationSecrets], nil
}
