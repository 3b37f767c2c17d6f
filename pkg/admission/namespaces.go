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

var _ LiveNamespaceDefaults = CachedNamespaces{}

// CachedNamespaces reads namespace defaults from a controller-runtime cache that holds Namespaces
// as metadata only (PartialObjectMetadata): flowauth needs their annotations, nothing else.
type CachedNamespaces struct {
	Reader client.Reader
	// Live, when set, is read for a namespace the cache lacks (see also LiveDefaults): the
	// manager's API reader.
	Live client.Reader
}

// Defaults returns the namespace's flowauth.io/secrets annotation; "" for a namespace that
// neither the cache nor the API server holds. A namespace the cache lacks (created in the same
// `kubectl apply` as the flow run) is read from the API server.
func (c CachedNamespaces) Defaults(ctx context.Context, namespace string) (string, error) {
	ns := namespaceMeta()
	err := c.Reader.Get(ctx, client.ObjectKey{Name: namespace}, ns)
	switch {
	case apierrors.IsNotFound(err):
		return c.LiveDefaults(ctx, namespace)
	case err != nil:
		return "", err
	}
	return ns.Annotations[mutate.AnnotationSecrets], nil
}

// LiveDefaults reads the annotation from the API server; with no Live reader, "" (the cache's
// answer stands). The handler also calls it when a Prefect flow-run pod that declares nothing
// finds no defaults in the cache: its namespace's defaults may have been set a moment ago. (A
// pod that declares names of its own is not held up for a read: if its namespace's defaults
// were set within the watch's delay, a few milliseconds, it gets its own names only, and its
// flowauth.io/status says which.)
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
