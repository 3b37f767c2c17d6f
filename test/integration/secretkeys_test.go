package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flowauth/flowauth/pkg/secretkeys"
)

// TestKeyCacheFollowsTheServerThroughItsSelectors: Secrets and ConfigMaps written through the
// real API server (values in data, stringData and kubectl's last-applied annotation) reach the
// index as key names, those the default selectors leave out never do, and a live read by name
// still finds them. pkg/secretkeys' unit tests hold the index to names only.
func TestKeyCacheFollowsTheServerThroughItsSelectors(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := newNamespace(t, false, "")
	const value = "integration-secret-value-51ab0e"
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "aws-credentials", Namespace: ns,
			Annotations: map[string]string{"kubectl.kubernetes.io/last-applied-configuration": `{"stringData":{"ACCESS_KEY":"` + value + `"}}`}},
		Data:       map[string][]byte{"ACCESS_KEY": []byte(value)},
		StringData: map[string]string{"SECRET_ACCESS_KEY": value},
	}
	if err := k8s.Create(ctx, secret); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "flow-env", Namespace: ns}, Data: map[string]string{"REGION": value}}); err != nil {
		t.Fatal(err)
	}

	cs, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		t.Fatal(err)
	}
	index, err := secretkeys.Watch(ctx, cs, secretkeys.Options{Namespaces: []string{ns},
		SecretFieldSelector: secretkeys.DefaultSecretFieldSelector, ConfigMapLabelSelector: secretkeys.DefaultConfigMapLabelSelector})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !index.Synced() {
		if time.Now().After(deadline) {
			t.Fatal("key cache did not sync")
		}
		time.Sleep(50 * time.Millisecond)
	}

	if keys, ok := index.SecretKeys(ns, "aws-credentials"); !ok || fmt.Sprint(keys) != "[ACCESS_KEY SECRET_ACCESS_KEY]" {
		t.Errorf("SecretKeys = %v, %v", keys, ok)
	}
	if keys, ok := index.ConfigMapKeys(ns, "flow-env"); !ok || fmt.Sprint(keys) != "[REGION]" {
		t.Errorf("ConfigMapKeys = %v, %v", keys, ok)
	}
	// The server-side selectors keep Helm's records and token Secrets out of the watch, both
	// in the first list and in the watch that follows it.
	for _, obj := range []client.Object{
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "sh.helm.release.v1.app.v1", Namespace: ns, Labels: map[string]string{"owner": "helm"}},
			Type: "helm.sh/release.v1", Data: map[string][]byte{"release": []byte(value)}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "pull", Namespace: ns}, Type: corev1.SecretTypeDockerConfigJson,
			Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{}}`)}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "sh.helm.release.v1.app.v1", Namespace: ns, Labels: map[string]string{"owner": "helm"}},
			Data: map[string]string{"release": value}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "late", Namespace: ns}, Data: map[string][]byte{"token": []byte(value)}},
	} {
		if err := k8s.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		if _, ok := index.SecretKeys(ns, "late"); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a Secret created after the first list never reached the index")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, ok := index.SecretKeys(ns, "sh.helm.release.v1.app.v1"); ok {
		t.Error("a Helm release Secret reached the index")
	}
	if _, ok := index.SecretKeys(ns, "pull"); ok {
		t.Error("an image-pull Secret reached the index")
	}
	if _, ok := index.ConfigMapKeys(ns, "sh.helm.release.v1.app.v1"); ok {
		t.Error("a Helm release ConfigMap reached the index")
	}
	// What the watch leaves out is still found when asked for by name.
	live := secretkeys.NewLive(cs, 5*time.Second)
	if keys, found, err := live.SecretKeys(ctx, ns, "pull"); err != nil || !found || fmt.Sprint(keys) != "["+corev1.DockerConfigJsonKey+"]" {
		t.Errorf("Live.SecretKeys = %v, %v, %v", keys, found, err)
	}

	// Deleting is seen too.
	if err := k8s.Delete(ctx, secret); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		if _, ok := index.SecretKeys(ns, "aws-credentials"); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a deleted Secret is still in the index")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
