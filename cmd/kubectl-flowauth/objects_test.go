package main

import (
	"context"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

// TestDoctorFindsTheInstallation (issue 32, finding 4): doctor finds the objects the chart names
// for any release (release "prod" names them "prod-flowauth"), and a kustomize install's, whose
// names are others, from the configuration that carries flowauth's pod webhook.
func TestDoctorFindsTheInstallation(t *testing.T) {
	mwc := func(name, service, namespace string) *admissionregistrationv1.MutatingWebhookConfiguration {
		return &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: name},
			Webhooks: []admissionregistrationv1.MutatingWebhook{{Name: "pods.flowauth.io",
				ClientConfig: admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{Name: service, Namespace: namespace}}}}}
	}
	labels := map[string]string{"app.kubernetes.io/name": "flowauth", "app.kubernetes.io/component": "webhook"}
	kustomized := []client.Object{
		mwc("flowauth-webhook-configuration", "flowauth-webhook-service", "flowauth-system"),
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "flowauth-webhook-service", Namespace: "flowauth-system"}, Spec: corev1.ServiceSpec{Selector: labels}},
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "flowauth-webhook", Namespace: "flowauth-system"},
			Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}}}},
	}
	for _, tt := range []struct {
		name, release string
		objs          []client.Object
		want          installation
	}{
		{"the chart, release flowauth", "flowauth", []client.Object{mwc("flowauth", "flowauth", "flowauth-system")},
			installation{config: "flowauth", deployment: "flowauth", service: "flowauth", namespace: "flowauth-system"}},
		{"the chart, release prod", "prod", []client.Object{mwc("prod-flowauth", "prod-flowauth", "flowauth-system")},
			installation{config: "prod-flowauth", deployment: "prod-flowauth", service: "prod-flowauth", namespace: "flowauth-system"}},
		{"kustomize", "flowauth", kustomized,
			installation{config: "flowauth-webhook-configuration", deployment: "flowauth-webhook", service: "flowauth-webhook-service", namespace: "flowauth-system"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := findInstallation(context.Background(), fake.NewClientBuilder().WithObjects(tt.objs...).Build(), tt.release, "flowauth-system")
			got.pods = nil
			if got != tt.want {
				t.Errorf("found %+v; want %+v", got, tt.want)
			}
		})
	}
}
