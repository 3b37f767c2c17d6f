package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowauth/flowauth/test/localcluster"
)

// service stands in for a Service with kube-proxy: each new connection goes to the next backend
// whose /readyz answers 200, as the endpoints controller and kube-proxy route.
type service struct {
	mu       sync.Mutex
	backends []*backend
	next     int
}

type backend struct {
	addr, readyz string
	ready        atomic.Bool
}

func (s *service) pick() *backend {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range s.backends {
		b := s.backends[s.next%len(s.backends)]
		s.next++
		if b.ready.Load() {
			return b
		}
	}
	return nil
}

func (s *service) setReadyz(addr, readyz string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range s.backends {
		if b.addr == addr {
			b.readyz = readyz
		}
	}
}

// run probes readiness every 100 ms and proxies connections until ctx ends.
func (s *service) run(ctx context.Context, l net.Listener) {
	go func() {
		for ctx.Err() == nil {
			s.mu.Lock()
			backends := append([]*backend(nil), s.backends...)
			s.mu.Unlock()
			for _, b := range backends {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.readyz, nil)
				resp, err := http.DefaultClient.Do(req)
				b.ready.Store(err == nil && resp.StatusCode == http.StatusOK)
				if err == nil {
					_ = resp.Body.Close()
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer func() { _ = conn.Close() }()
				b := s.pick()
				if b == nil {
					return
				}
				var d net.Dialer
				up, err := d.DialContext(ctx, "tcp", b.addr)
				if err != nil {
					return
				}
				defer func() { _ = up.Close() }()
				go func() { _, _ = io.Copy(up, conn) }()
				_, _ = io.Copy(conn, up)
			}()
		}
	}()
}

// TestRestartOfOneOfTwoReplicasFailsNoAdmission sends flow-run admissions through a stand-in
// Service to two webhook replicas, restarts one of them (SIGTERM, then a new process on its
// port) mid-load, and expects every admission answered: the stopping replica reports not ready
// at once, keeps serving through --shutdown-delay, finishes what is in flight and exits cleanly.
func TestRestartOfOneOfTwoReplicasFailsNoAdmission(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	certDir := t.TempDir()
	crt, err := localcluster.ServingCert(certDir)
	if err != nil {
		t.Fatal(err)
	}
	replica := func(addr string) (*localcluster.Webhook, error) {
		_, port, _ := net.SplitHostPort(addr)
		w, err := cluster.RunWebhook(ctx, "--cluster-connection=false", "--namespace-defaults=false", "--cert-dir="+certDir, "--port="+port, "--shutdown-delay=2s")
		if err != nil {
			return nil, err
		}
		return w, w.WaitReady(ctx, addr)
	}
	svc := &service{}
	var replicas []*localcluster.Webhook
	for range 2 {
		addr, err := localcluster.FreeAddr()
		if err != nil {
			t.Fatal(err)
		}
		w, err := replica(addr)
		if err != nil {
			t.Fatal(err)
		}
		replicas = append(replicas, w)
		b := &backend{addr: addr, readyz: w.ReadyzURL}
		b.ready.Store(true) // WaitReady saw it ready
		svc.backends = append(svc.backends, b)
	}
	defer func() {
		for _, w := range replicas {
			_ = w.Stop()
		}
	}()
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	svc.run(ctx, l)

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(crt)
	// A new connection per request, as the Service sees a client that does not pin a backend.
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}}}
	load := localcluster.StartLoad(ctx, 4, client, "https://"+l.Addr().String()+"/mutate-v1-pod", localcluster.FlowRunReview(t, "../.."), 0)

	time.Sleep(time.Second)
	t.Logf("%s stopping replica 0", time.Now().Format("15:04:05.000"))
	before := load.Answered()
	if err := replicas[0].Stop(); err != nil {
		t.Errorf("the stopped replica did not exit cleanly: %v", err)
	}
	during := load.Answered() - before
	t.Logf("%s replica 0 exited", time.Now().Format("15:04:05.000"))
	w, err := replica(svc.backends[0].addr)
	if err != nil {
		t.Fatal(err)
	}
	replicas[0] = w
	svc.setReadyz(svc.backends[0].addr, w.ReadyzURL)
	time.Sleep(time.Second)
	ok, failed, first := load.Stop()

	t.Logf("%d admissions answered (%d while one replica was stopping), %d failed", ok, during, failed)
	if failed > 0 {
		t.Errorf("%d admissions failed across the restart; first: %v", failed, first)
	}
	if ok < 100 || during == 0 {
		t.Errorf("too little load to tell: %d answered, %d during the stop", ok, during)
	}
}
