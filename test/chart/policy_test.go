package chart

import (
	"context"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestOwnWebhookConfigurationsTakeOnlyACABundle: with self-managed TLS, flowauth's ServiceAccount
// may update its own webhook configurations (pinned by resourceNames) to keep their caBundle
// current, and RBAC cannot narrow that to one field. On the old main a stolen token could widen
// the rules (receive every Secret write), empty the namespaceSelector (mutate kube-system's
// pods) or set failurePolicy Ignore. The chart's ValidatingAdmissionPolicy lets that account
// change the caBundle and nothing else: each attempt below is made with the account's own token.
func TestOwnWebhookConfigurationsTakeOnlyACABundle(t *testing.T) {
	ctx := context.Background()
	mustHelm(t, "install", "flowauth", "charts/flowauth", "--namespace", namespace, "--create-namespace")
	t.Cleanup(func() { mustHelm(t, "uninstall", "flowauth", "--namespace", namespace, "--wait") })
	kubeconfig, err := cluster.ServiceAccountKubeconfig(ctx, namespace, "flowauth")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	asFlowauth, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	update := func(change func(*admissionregistrationv1.MutatingWebhookConfiguration)) error {
		var mwc admissionregistrationv1.MutatingWebhookConfiguration
		if err := asFlowauth.Get(ctx, types.NamespacedName{Name: "flowauth"}, &mwc); err != nil {
			t.Fatal(err)
		}
		change(&mwc)
		return asFlowauth.Update(ctx, &mwc)
	}
	refused := func(err error) bool {
		return err != nil && strings.Contains(err.Error(), "may change only the caBundle")
	}
	// The API server loads a new policy within a few seconds: until a harmless change is
	// refused, each one that passes is put back with the admin's client.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var before admissionregistrationv1.MutatingWebhookConfiguration
		if err := cluster.Client.Get(ctx, types.NamespacedName{Name: "flowauth"}, &before); err != nil {
			t.Fatal(err)
		}
		err := update(func(m *admissionregistrationv1.MutatingWebhookConfiguration) {
			seconds := *m.Webhooks[0].TimeoutSeconds + 1
			m.Webhooks[0].TimeoutSeconds = &seconds
		})
		if refused(err) {
			break
		}
		if err == nil {
			var after admissionregistrationv1.MutatingWebhookConfiguration
			if err := cluster.Client.Get(ctx, types.NamespacedName{Name: "flowauth"}, &after); err != nil {
				t.Fatal(err)
			}
			after.Webhooks[0].TimeoutSeconds = before.Webhooks[0].TimeoutSeconds
			if err := cluster.Client.Update(ctx, &after); err != nil {
				t.Fatal(err)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the policy was not in force after 30 s: %v", err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	failOpen := admissionregistrationv1.Ignore
	for _, tt := range []struct {
		name   string
		change func(*admissionregistrationv1.MutatingWebhookConfiguration)
	}{
		{"the rules, to receive every Secret write", func(m *admissionregistrationv1.MutatingWebhookConfiguration) {
			m.Webhooks[0].Rules[0].Resources = append(m.Webhooks[0].Rules[0].Resources, "secrets")
		}},
		{"the namespaceSelector, to reach kube-system", func(m *admissionregistrationv1.MutatingWebhookConfiguration) {
			m.Webhooks[0].NamespaceSelector = &metav1.LabelSelector{}
		}},
		{"the failurePolicy, to fail open", func(m *admissionregistrationv1.MutatingWebhookConfiguration) {
			m.Webhooks[0].FailurePolicy = &failOpen
		}},
		{"the matchConditions, to receive every pod", func(m *admissionregistrationv1.MutatingWebhookConfiguration) {
			m.Webhooks[0].MatchConditions = nil
		}},
		{"the service called", func(m *admissionregistrationv1.MutatingWebhookConfiguration) {
			url := "https://attacker.example:443/"
			m.Webhooks[0].ClientConfig.Service, m.Webhooks[0].ClientConfig.URL = nil, &url
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := update(tt.change); !refused(err) {
				t.Errorf("flowauth's own token changed %s: %v", tt.name, err)
			}
		})
	}
	t.Run("the caBundle, allowed", func(t *testing.T) {
		if err := update(func(m *admissionregistrationv1.MutatingWebhookConfiguration) {
			for i := range m.Webhooks {
				m.Webhooks[i].ClientConfig.CABundle = []byte("-----BEGIN CERTIFICATE-----\nrotated\n-----END CERTIFICATE-----\n")
			}
		}); err != nil {
			t.Fatalf("a caBundle update was refused: %v", err)
		}
	})
	t.Run("delete, refused", func(t *testing.T) {
		var mwc admissionregistrationv1.MutatingWebhookConfiguration
		mwc.Name = "flowauth"
		if err := asFlowauth.Delete(ctx, &mwc); err == nil {
			t.Fatal("flowauth's own token deleted its webhook configuration")
		}
	})
}
