package chart

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/flowauth/flowauth/test/localcluster"
)

// TestCertControllerRotationUnderLoad: installed with certs.validity=1m, flowauth renews its
// serving certificate through cert-controller about every 45 s (when a quarter is left). Under
// steady admissions on new connections, verified like the API server does against the injected
// caBundle, a renewal happens and no admission fails.
func TestCertControllerRotationUnderLoad(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := installAndRun(t, "--set", "certs.validity=1m")
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	if err := cluster.Client.Get(ctx, types.NamespacedName{Name: "flowauth"}, &mwc); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(mwc.Webhooks[0].ClientConfig.CABundle) {
		t.Fatal("no caBundle injected")
	}
	tlsConfig := &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	served := localcluster.ServedCertificates(tlsConfig)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: tlsConfig}}
	url := "https://" + net.JoinHostPort("localhost", w.port) + "/mutate-v1-pod"
	// Steady, not saturating: this is about rotation.
	load := localcluster.StartLoad(ctx, 2, client, url, localcluster.FlowRunReview(t, root), 10*time.Millisecond)
	deadline := time.Now().Add(100 * time.Second)
	for served() < 2 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(time.Second)
	ok, failed, first := load.Stop()
	t.Logf("%d admissions answered, %d failed, %d serving certificates seen", ok, failed, served())
	if served() < 2 {
		t.Errorf("no rotation happened within 100 s; args %v", w.deploy.Spec.Template.Spec.Containers[0].Args)
	}
	if failed > 0 {
		t.Errorf("%d admissions failed across the rotation; first: %v", failed, first)
	}
}
