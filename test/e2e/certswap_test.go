package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"testing"
	"time"

	"k8s.io/client-go/util/cert"

	"github.com/flowauth/flowauth/test/localcluster"
)

// TestCertificateFileSwapUnderLoad: the serving certificate in --cert-dir is replaced the way the
// kubelet updates a mounted Secret that cert-manager renewed (an atomic ..data swap), while
// admissions keep coming on new connections. Every admission is answered, and the new
// certificate is served without a restart.
func TestCertificateFileSwapUnderLoad(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	certDir := t.TempDir()
	pool := x509.NewCertPool()
	newPair := func() map[string][]byte {
		crt, key, err := cert.GenerateSelfSignedCertKey("localhost", []net.IP{net.ParseIP("127.0.0.1")}, nil)
		if err != nil {
			t.Fatal(err)
		}
		pool.AppendCertsFromPEM(crt)
		return map[string][]byte{"tls.crt": crt, "tls.key": key}
	}
	if err := localcluster.Project(certDir, newPair()); err != nil {
		t.Fatal(err)
	}
	second := newPair()
	addr, err := localcluster.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(addr)
	w, err := cluster.RunWebhook(ctx, "--cluster-connection=false", "--namespace-defaults=false", "--cert-dir="+certDir, "--port="+port)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop() }()
	if err := w.WaitReady(ctx, addr); err != nil {
		t.Fatal(err)
	}

	tlsConfig := &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	served := localcluster.ServedCertificates(tlsConfig)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: tlsConfig}}
	load := localcluster.StartLoad(ctx, 2, client, "https://"+addr+"/mutate-v1-pod", localcluster.FlowRunReview(t, "../.."), 0)
	time.Sleep(500 * time.Millisecond)
	if err := localcluster.Project(certDir, second); err != nil {
		t.Fatal(err)
	}
	// certwatcher reacts to the file events, or at the latest on its 10 s poll.
	deadline := time.Now().Add(15 * time.Second)
	for served() < 2 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	ok, failed, first := load.Stop()
	t.Logf("%d admissions answered across the swap, %d failed, %d certificates served", ok, failed, served())
	if failed > 0 {
		t.Errorf("%d admissions failed across the certificate swap; first: %v", failed, first)
	}
	if served() < 2 {
		t.Errorf("the new certificate was never served")
	}
}
