package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/flowauth/flowauth/test/localcluster"
)

// outage is a TCP proxy in front of the kube-apiserver that can be cut (listener closed, every
// connection reset: the API server is gone, as when its process stops) and restored on the same
// address, without restarting the control plane, whose restart would drop its users and CA.
type outage struct {
	addr, upstream string
	mu             sync.Mutex
	l              net.Listener
	conns          map[net.Conn]bool
}

func (o *outage) up(ctx context.Context) error {
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", o.addr)
	if err != nil {
		return err
	}
	o.mu.Lock()
	o.l = l
	o.mu.Unlock()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			var d net.Dialer
			u, err := d.DialContext(ctx, "tcp", o.upstream)
			if err != nil {
				_ = c.Close()
				continue
			}
			o.mu.Lock()
			o.conns[c], o.conns[u] = true, true
			o.mu.Unlock()
			go func() { _, _ = io.Copy(u, c); _ = u.Close() }()
			go func() { _, _ = io.Copy(c, u); _ = c.Close() }()
		}
	}()
	return nil
}

func (o *outage) cut() {
	o.mu.Lock()
	defer o.mu.Unlock()
	_ = o.l.Close()
	for c := range o.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // reset, as a vanished process does
		}
		_ = c.Close()
	}
	o.conns = map[net.Conn]bool{}
}

// TestAPIServerOutage: the webhook loses the API server for a while. It keeps answering from
// its last snapshot of namespace defaults and Secret keys, stays ready (it can serve
// correctly), and once the API server is back it catches up by itself.
func TestAPIServerOutage(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := newNamespace(t, true)
	kubectl(t, "annotate", "namespace", ns, "flowauth.io/secrets=GITHUB_ACCESS_TOKEN")

	apiserver, err := url.Parse(cluster.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	proxyAddr, err := localcluster.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	proxy := &outage{addr: proxyAddr, upstream: apiserver.Host, conns: map[net.Conn]bool{}}
	if err := proxy.up(ctx); err != nil {
		t.Fatal(err)
	}
	kc, err := clientcmd.LoadFromFile(cluster.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range kc.Clusters {
		c.Server = "https://" + proxyAddr
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, kubeconfig); err != nil {
		t.Fatal(err)
	}
	certDir := t.TempDir()
	if _, err := localcluster.ServingCert(certDir); err != nil {
		t.Fatal(err)
	}
	addr, err := localcluster.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(addr)
	w, err := cluster.RunWebhook(ctx, "--kubeconfig="+kubeconfig, "--cert-dir="+certDir, "--port="+port, "--secret-lookup=keys")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop() }()
	if err := w.WaitReady(ctx, addr); err != nil {
		t.Fatal(err)
	}

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // the test talks to its own webhook
	// A Prefect 2 flow-run pod that declares nothing: what it gets comes from the namespace defaults.
	pod := fmt.Sprintf(`{"apiVersion":"v1","kind":"Pod","metadata":{"generateName":"run-","namespace":%q,"labels":{"prefect.io/flow-run-id":"x"}},"spec":{"containers":[{"name":"flow","image":"i"}]}}`, ns)
	injected := func() string {
		body := fmt.Appendf(nil, `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"version":"v1","kind":"Pod"},"resource":{"version":"v1","resource":"pods"},"namespace":%q,"operation":"CREATE","object":%s}}`, ns, pod)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+addr+"/mutate-v1-pod", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return "error: " + err.Error()
		}
		defer func() { _ = resp.Body.Close() }()
		var rev admissionv1.AdmissionReview
		if err := json.NewDecoder(resp.Body).Decode(&rev); err != nil || rev.Response == nil {
			return fmt.Sprintf("bad answer: %v", err)
		}
		out := string(rev.Response.Patch) + strings.Join(rev.Response.Warnings, "\n")
		if rev.Response.Result != nil {
			out += rev.Response.Result.Message
		}
		return out
	}
	ready := func() bool {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, w.ReadyzURL, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	if got := injected(); !strings.Contains(got, "injected=GITHUB_ACCESS_TOKEN") || strings.Contains(got, "not found") {
		t.Fatalf("before the outage: %s", got)
	}

	proxy.cut()
	var d net.Dialer
	if conn, err := d.DialContext(ctx, "tcp", proxyAddr); err == nil {
		_ = conn.Close()
		t.Fatal("the API server is still reachable through the cut proxy")
	}
	kubectl(t, "annotate", "--overwrite", "namespace", ns, "flowauth.io/secrets=SLACK_WEBHOOK_URL")
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if got := injected(); !strings.Contains(got, "injected=GITHUB_ACCESS_TOKEN") || strings.Contains(got, "not found") {
			t.Fatalf("during the outage the answer changed: %s", got)
		}
		if !ready() {
			t.Fatal("not ready during the outage, though it serves correctly from its snapshot")
		}
		time.Sleep(250 * time.Millisecond)
	}

	if err := proxy.up(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the webhook catching up after the outage", func() (bool, string) {
		got := injected()
		return strings.Contains(got, "injected=SLACK_WEBHOOK_URL"), got
	})
	if !ready() {
		t.Error("not ready after the outage")
	}
}
