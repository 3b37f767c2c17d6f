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

// CachedNamespaces reads namespace defaults from a controller-runtime cache that holds Namespaces
// as metadata only (PartialObjectMetadata): flowauth needs their annotations, nothing else.
type CachedNamespaces struct {
	Reader client.Reader
}

// Defaults returns the namespace's flowauth.io/secrets annotation; "" for a namespace that the
// cache does not hold (it cannot have pods being created in it).
func (c CachedNamespaces) Defaults(ctx context.Context, namespace string) (string, error) {
	ns := namespaceMeta()
	if err := c.Reader.Get(ctx, client.ObjectKey{Name: namespace}, ns); err != nil {
		if apierrors.IsNotFound(err) {
			return "", nil
		}
		return "", err
	}
	return ns.Annotations[mutate.AnnotationSecrets], nil
}
