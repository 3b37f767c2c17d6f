package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestCertExpiryFollowsTheServedFile: the gauge is the NotAfter of tls.crt in the cert dir as it
// is at scrape time, and NaN when there is none (so an expiry alert cannot fire on a missing file).
func TestCertExpiryFollowsTheServedFile(t *testing.T) {
	dir := t.TempDir()
	c := newCertExpiry()
	if v := c.notAfter(); !math.IsNaN(v) {
		t.Errorf("no cert dir: %v, want NaN", v)
	}
	c.setDir(dir)
	if v := c.notAfter(); !math.IsNaN(v) {
		t.Errorf("no tls.crt: %v, want NaN", v)
	}
	for _, validity := range []time.Duration{time.Hour, 48 * time.Hour} {
		notAfter := writeServingCert(t, dir, validity)
		if got := c.notAfter(); got != float64(notAfter.Unix()) {
			t.Errorf("validity %s: gauge %v, want %d", validity, got, notAfter.Unix())
		}
		notBefore, _ := c.validity()
		if got := notAfter.Unix() - int64(notBefore); got != int64(validity.Seconds()) {
			t.Errorf("validity %s: NotAfter - NotBefore = %ds", validity, got)
		}
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	if n, err := testutil.GatherAndCount(reg, "flowauth_serving_certificate_expiry_timestamp_seconds", "flowauth_serving_certificate_not_before_timestamp_seconds"); err != nil || n != 2 {
		t.Errorf("gathered %d series: %v", n, err)
	}
	if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}

// writeServingCert writes a self-signed tls.crt valid for validity into dir and returns its NotAfter.
func writeServingCert(t *testing.T, dir string, validity time.Duration) time.Time {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	notAfter := time.Now().Add(validity).Truncate(time.Second)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "flowauth"}, NotBefore: notAfter.Add(-validity), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return notAfter
}
