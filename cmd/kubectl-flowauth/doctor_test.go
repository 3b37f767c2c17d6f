package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

// TestDoctorSaysWhatTheNamespaceIsDenied: doctor reads the webhook's arguments. A namespace that
// key lookup does not watch is told so with the upgrade that adds it (the webhook, at apply time,
// says the same, never "not found"); one without the allow-list the webhook requires fails.
func TestDoctorSaysWhatTheNamespaceIsDenied(t *testing.T) {
	deploy := func(args ...string) *appsv1.Deployment {
		return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "flowauth", Namespace: "flowauth-system"},
			Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "webhook", Args: args}}}}}}
	}
	ns := func(annotations map[string]string) *corev1.Namespace {
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "flows", Annotations: annotations}}
	}
	for _, tt := range []struct {
		name   string
		deploy *appsv1.Deployment
		ns     *corev1.Namespace
		want   string
		failed int
	}{
		{"unwatched", deploy("--secret-lookup=keys", "--secret-lookup-namespaces=etl,ml"), ns(nil),
			"warn  namespace flows is not in the webhook's secretLookupNamespaces (etl,ml)", 0},
		{"watched", deploy("--secret-lookup=keys", "--secret-lookup-namespaces=etl,flows"), ns(nil), "", 0},
		{"allow-list required and missing", deploy("--require-allow-list"), ns(nil),
			"FAIL  namespace flows has no flowauth.io/allowed-secrets annotation and the webhook requires one", 1},
		{"allow-list set", deploy("--require-allow-list"), ns(map[string]string{"flowauth.io/allowed-secrets": "AWS_CREDENTIALS"}),
			"ok    namespace flows allows: AWS_CREDENTIALS", 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			d := &doctor{out: &out, c: fake.NewClientBuilder().WithObjects(tt.deploy, tt.ns).Build(), namespace: "flows", release: "flowauth", relNS: "flowauth-system"}
			d.namespacePolicy(context.Background())
			if tt.want == "" && out.Len() > 0 || !strings.Contains(out.String(), tt.want) || d.failed != tt.failed {
				t.Errorf("doctor said (failed %d, want %d):\n%s\nwant a line starting %q", d.failed, tt.failed, out.String(), tt.want)
			}
		})
	}
}

// TestExpiryWarnsAsTheAlertFires: doctor's certificate line warns exactly when
// FlowauthCertificateExpiringSoon fires: less than an eighth of the lifetime left, at most 7 days.
func TestExpiryWarnsAsTheAlertFires(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	for _, tt := range []struct {
		name                string
		issuedAgo, leftFrom time.Duration
		want                status
	}{
		{"a year-long certificate with 300 days left", 65 * day, 300 * day, pass},
		{"a year-long certificate with 3 days left", 362 * day, 3 * day, warn},
		{"a 10-day certificate with 3 days left: renewal not due yet", 7 * day, 3 * day, pass},
		{"a 10-day certificate with a day left", 9 * day, day, warn},
		{"an expired certificate", 400 * day, -day, warn},
	} {
		cert := &x509.Certificate{NotBefore: now.Add(-tt.issuedAgo), NotAfter: now.Add(tt.leftFrom)}
		got, what := expiry(cert, now)
		if got != tt.want || !strings.Contains(what, cert.NotAfter.Format(time.RFC3339)) {
			t.Errorf("%s: %s %q, want %s and the expiry", tt.name, got, what, tt.want)
		}
	}
}
