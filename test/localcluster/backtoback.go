package localcluster

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// BackToBack creates n pairs of a Secret and, right after it, a flow-run pod that declares
// AWS_CREDENTIALS from that Secret, in namespace (which must be opted in), as a `kubectl apply`
// of both would. It returns how many pods flowauth refused or warned about as if their Secret
// were missing: with the webhook's --missing-secret=deny, every one is a false denial; with
// warn, a false warning. Pods are left in place (no kubelet runs them); delete the namespace.
func BackToBack(ctx context.Context, cfg *rest.Config, namespace string, n int) (falseMissing int, firstMessage string, err error) {
	var warned missingWarnings
	cfg = rest.CopyConfig(cfg)
	cfg.WarningHandler, cfg.WarningHandlerWithContext = nil, &warned
	cfg.QPS, cfg.Burst = 1000, 1000 // back to back: no client-side pacing to speak of
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		return 0, "", err
	}
	for i := range n {
		name := fmt.Sprintf("b2b-%04d", i)
		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
			StringData: map[string]string{"ACCESS_KEY": "back-to-back", "SECRET_ACCESS_KEY": "back-to-back"}}
		if err := c.Create(ctx, secret); err != nil {
			return falseMissing, firstMessage, fmt.Errorf("creating Secret %s: %w", name, err)
		}
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Annotations: map[string]string{
				"flowauth.io/secrets": "AWS_CREDENTIALS", "secret.flowauth.io/AWS_CREDENTIALS": name,
			}},
			Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "flow", Image: "prefect"}}},
		}
		warned = nil
		err := c.Create(ctx, pod)
		switch {
		case err != nil && strings.Contains(err.Error(), "not found"):
			falseMissing++
			if firstMessage == "" {
				firstMessage = err.Error()
			}
		case err != nil:
			return falseMissing, firstMessage, fmt.Errorf("creating pod %s: %w", name, err)
		case len(warned) > 0:
			falseMissing++
			if firstMessage == "" {
				firstMessage = strings.Join(warned, "; ")
			}
		}
	}
	return falseMissing, firstMessage, nil
}

// missingWarnings keeps the API server's warnings that flowauth found a Secret missing.
type missingWarnings []string

func (w *missingWarnings) HandleWarningHeaderWithContext(_ context.Context, _ int, _, text string) {
	if strings.Contains(text, "flowauth") && strings.Contains(text, "not found") {
		*w = append(*w, text)
	}
}
