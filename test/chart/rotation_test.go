package chart

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
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
	var mu sync.Mutex
	served := map[string]bool{}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12,
			VerifyConnection: func(cs tls.ConnectionState) error {
				mu.Lock()
				served[string(cs.PeerCertificates[0].Signature)] = true
				mu.Unlock()
				return nil
			}}}}
	url := "https://" + net.JoinHostPort("localhost", w.port) + "/mutate-v1-pod"
	body := localcluster.FlowRunReview(t, root)
	var ok, failed atomic.Int64
	load, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for load.Err() == nil {
				if err := localcluster.Admit(load, client, url, body); err != nil {
					if load.Err() == nil {
						failed.Add(1)
						t.Logf("%s admission failed: %v", time.Now().Format("15:04:05.000"), err)
					}
				} else {
					ok.Add(1)
				}
				time.Sleep(10 * time.Millisecond) // steady, not saturating: this is about rotation
			}
		})
	}
	deadline := time.Now().Add(100 * time.Second)
	for {
		mu.Lock()
		n := len(served)
		mu.Unlock()
		if n >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(time.Second)
	stopLoad()
	wg.Wait()
	t.Logf("%d admissions answered, %d failed, %d serving certificates seen", ok.Load(), failed.Load(), len(served))
	if len(served) < 2 {
		t.Errorf("no rotation happened within 100 s; args %v", w.deploy.Spec.Template.Spec.Containers[0].Args)
	}
	if failed.Load() > 0 {
		t.Errorf("%d admissions failed across the rotation", failed.Load())
	}
}
