package admission

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flowauth/flowauth/pkg/mutate"
)

// CachedNamespaces reads namespace defaults from a controller-runtime cache that holds Namespaces
// as metadata only (PartialObjectMetadata): flowauth needs their annotations, nothing else.
type CachedNamespaces struct {
	Reader client.Reader
}

// Defaults returns the namespace's flowauth.io/secrets annotation; "" for a namespace that the
// cache does not hold (it cannot have pods being created in it).
func (c CachedNamespaces) Defaults(ctx context.Context, namespace string) (string, error) {
	var ns metav1.PartialObjectMetadata
	ns.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	if err := c.Reader.Get(ctx, client.ObjectKey{Name: namespace}, &ns); err != nil {
		if apierrors.IsNotFound(err) {
			return "", nil
		}
		return "", err
	}
	return ns.Annotations[mutate.AnnotationSecrets], nil
}
