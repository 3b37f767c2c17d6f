package main

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/util/cert"

	"github.com/flowauth/flowauth/test/localcluster"
)

// startStandalone runs the real binary's server (no cluster) on a free port with a fresh
// self-signed certificate and returns its address.
func startStandalone(t *testing.T, extra func(*config)) string {
	t.Helper()
	dir := t.TempDir()
	crt, key, err := cert.GenerateSelfSignedCertKey("localhost", []net.IP{net.ParseIP("127.0.0.1")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), crt, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.key"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	var lc net.ListenConfig
	l, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	c, err := parseFlags([]string{"--cluster-connection=false", "--namespace-defaults=false", "--cert-dir=" + dir, "--port=" + strconv.Itoa(port),
		"--metrics-bind-address=0", "--health-probe-bind-address=0"})
	if err != nil {
		t.Fatal(err)
	}
	if extra != nil {
		extra(&c)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, c) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server stopped with %v", err)
		}
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		d := &tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // reachability only
		conn, err := d.DialContext(context.Background(), "tcp", addr)
		if err == nil {
			_ = conn.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not up: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestServerSpeaksTLS12PlusAndHTTP1Only: what DESIGN.md §4 promises, seen from a client.
func TestServerSpeaksTLS12PlusAndHTTP1Only(t *testing.T) {
	addr := startStandalone(t, nil)
	dial := func(cfg *tls.Config) (*tls.Conn, error) {
		cfg.InsecureSkipVerify = true
		conn, err := (&tls.Dialer{Config: cfg}).DialContext(context.Background(), "tcp", addr)
		if err != nil {
			return nil, err
		}
		return conn.(*tls.Conn), nil
	}
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		if conn, err := dial(&tls.Config{MinVersion: v, MaxVersion: v}); err == nil {
			_ = conn.Close()
			t.Errorf("a %s handshake succeeded", tls.VersionName(v))
		}
	}
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		conn, err := dial(&tls.Config{MinVersion: v, MaxVersion: v, NextProtos: []string{"h2", "http/1.1"}})
		if err != nil {
			t.Errorf("%s refused: %v", tls.VersionName(v), err)
			continue
		}
		if p := conn.ConnectionState().NegotiatedProtocol; p != "http/1.1" {
			t.Errorf("%s: negotiated %q, want http/1.1 (HTTP/2 is off)", tls.VersionName(v), p)
		}
		_ = conn.Close()
	}
	conn, err := dial(&tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"h2"}})
	if err == nil {
		if p := conn.ConnectionState().NegotiatedProtocol; p == "h2" {
			t.Error("a client offering only h2 got h2")
		}
		_ = conn.Close()
	}
}

// TestPlainHTTPIsRefused: an AdmissionReview sent without TLS is never processed.
func TestPlainHTTPIsRefused(t *testing.T) {
	addr := startStandalone(t, nil)
	body := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","object":{}}}`
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, "http://"+addr+"/mutate-v1-pod", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return // the connection was closed: refused
	}
	defer func() { _ = resp.Body.Close() }()
	got, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadRequest || strings.Contains(string(got), `"uid"`) {
		t.Errorf("plain HTTP got %d %q; want 400 from the TLS server and no AdmissionReview", resp.StatusCode, got)
	}
}

func TestHTTP2CanBeEnabled(t *testing.T) {
	addr := startStandalone(t, func(c *config) { c.enableHTTP2 = true })
	conn, err := (&tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2", "http/1.1"}}}).DialContext(context.Background(), "tcp", addr) //nolint:gosec // test
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	if p := conn.(*tls.Conn).ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Errorf("--enable-http2: negotiated %q, want h2", p)
	}
}

// TestPprofOnlyWhenAsked: Go's profiles are served at --pprof-bind-address, and nowhere by default
// (the webhook's own port answers /debug/pprof/ with 404).
func TestPprofOnlyWhenAsked(t *testing.T) {
	var lc net.ListenConfig
	l, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pprofAddr := l.Addr().String()
	_ = l.Close()
	get := func(url string, client *http.Client) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // a self-signed test server

	off := startStandalone(t, nil)
	if code, _ := get("https://"+off+"/debug/pprof/", insecure); code != http.StatusNotFound {
		t.Errorf("webhook port without --pprof-bind-address: /debug/pprof/ answered %d, want 404", code)
	}
	startStandalone(t, func(c *config) { c.pprofBindAddress = pprofAddr })
	code, body := get("http://"+pprofAddr+"/debug/pprof/", http.DefaultClient)
	if code != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Errorf("--pprof-bind-address=%s: /debug/pprof/ answered %d: %.200s", pprofAddr, code, body)
	}
}

// TestOnlyTheAPIServerCertificateIsServed: with --client-ca-file (and --client-names), a review
// is answered only over a connection whose client certificate that CA issued (to one of those
// names): a pod that reaches the Service without it, or with another CA's, gets no answer.
func TestOnlyTheAPIServerCertificateIsServed(t *testing.T) {
	apiserverCA, err := localcluster.NewCA("apiserver-webhook-client-ca")
	if err != nil {
		t.Fatal(err)
	}
	otherCA, err := localcluster.NewCA("someone-else")
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, apiserverCA.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	addr := startStandalone(t, func(c *config) { c.clientCAFile, c.clientNames = caFile, []string{"kube-apiserver"} })
	body := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"version":"v1","kind":"Pod"},"resource":{"version":"v1","resource":"pods"},"operation":"CREATE","namespace":"flows","object":{"metadata":{"annotations":{"flowauth.io/secrets":"AWS_CREDENTIALS"}},"spec":{"containers":[{"name":"flow","image":"i"}]}}}}`
	post := func(ca *localcluster.CA, name string) (int, error) {
		cfg := &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the server's certificate is not what is tested
		if ca != nil {
			crt, key, err := ca.Issue(name, nil)
			if err != nil {
				t.Fatal(err)
			}
			pair, err := tls.X509KeyPair(crt, key)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Certificates = []tls.Certificate{pair}
		}
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, "https://"+addr+"/mutate-v1-pod", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		defer func() { _ = resp.Body.Close() }()
		_, _ = io.ReadAll(resp.Body)
		return resp.StatusCode, nil
	}
	if code, err := post(apiserverCA, "kube-apiserver"); err != nil || code != http.StatusOK {
		t.Fatalf("the API server's certificate: %d %v", code, err)
	}
	for _, c := range []struct {
		what string
		ca   *localcluster.CA
		name string
	}{{"no certificate", nil, ""}, {"another CA's", otherCA, "kube-apiserver"}, {"the CA's, for another name", apiserverCA, "tenant-pod"}} {
		if code, err := post(c.ca, c.name); err == nil {
			t.Errorf("%s: answered %d", c.what, code)
		}
	}
}

func TestClientNamesNeedTheCA(t *testing.T) {
	if _, err := parseFlags([]string{"--client-names=kube-apiserver"}); err == nil || !strings.Contains(err.Error(), "-client-ca-file") {
		t.Errorf("got %v", err)
	}
}
