package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/flowauth/flowauth/pkg/secretkeys"
)

// TestKeyCacheHoldsNoValue: Secrets and ConfigMaps written through the real API server, with
// values in data, stringData and the last-applied annotation kubectl writes, reach the informer
// store and the index as names only. The store's objects are read back and searched.
func TestKeyCacheHoldsNoValue(t *testing.T) {
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

	c, err := cache.New(restCfg, secretkeys.CacheOptions(cache.Options{}, []string{ns}))
	if err != nil {
		t.Fatal(err)
	}
	index := secretkeys.NewIndex()
	synced, err := index.Watch(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.Start(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for !synced() {
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
	var secrets corev1.SecretList
	var configMaps corev1.ConfigMapList
	if err := c.List(ctx, &secrets); err != nil {
		t.Fatal(err)
	}
	if err := c.List(ctx, &configMaps); err != nil {
		t.Fatal(err)
	}
	if len(secrets.Items) != 1 || len(configMaps.Items) == 0 {
		t.Fatalf("the store holds %d Secrets and %d ConfigMaps", len(secrets.Items), len(configMaps.Items))
	}
	stored, _ := json.Marshal([]any{secrets, configMaps})
	if strings.Contains(string(stored), value) {
		t.Errorf("the informer store holds a value:\n%s", stored)
	}
	for _, s := range secrets.Items {
		for k, v := range s.Data {
			if len(v) != 0 {
				t.Errorf("stored Secret %s key %s has %d bytes of value", s.Name, k, len(v))
			}
		}
		if len(s.Annotations) != 0 || len(s.ManagedFields) != 0 {
			t.Errorf("stored Secret %s keeps metadata that can hold values: %v %v", s.Name, s.Annotations, s.ManagedFields)
		}
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
