package main

import (
	"crypto/x509"
	"encoding/pem"
	"math"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// certExpiry exports when the serving certificate in --cert-dir was issued and when it expires,
// read at each scrape from the file the server serves (so a rotation shows at once). The chart's
// FlowauthCertificateExpiringSoon alert reads both: it fires when less than an eighth of the
// certificate's lifetime is left (at most 7 days), which is after any renewal was due, whatever
// the lifetime (self-managed certificates renew with a quarter left, cert-manager's with a third).
type certExpiry struct {
	dir           atomic.Pointer[string]
	notAfterDesc  *prometheus.Desc
	notBeforeDesc *prometheus.Desc
}

func newCertExpiry() *certExpiry {
	return &certExpiry{
		notAfterDesc: prometheus.NewDesc("flowauth_serving_certificate_expiry_timestamp_seconds",
			"When the serving certificate in --cert-dir expires (its NotAfter, Unix seconds); NaN while there is no readable certificate.", nil, nil),
		notBeforeDesc: prometheus.NewDesc("flowauth_serving_certificate_not_before_timestamp_seconds",
			"When the serving certificate in --cert-dir became valid (its NotBefore, Unix seconds); NaN while there is no readable certificate.", nil, nil),
	}
}

func (c *certExpiry) setDir(dir string) { c.dir.Store(&dir) }

func (c *certExpiry) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.notAfterDesc
	ch <- c.notBeforeDesc
}

func (c *certExpiry) Collect(ch chan<- prometheus.Metric) {
	notBefore, notAfter := c.validity()
	ch <- prometheus.MustNewConstMetric(c.notAfterDesc, prometheus.GaugeValue, notAfter)
	ch <- prometheus.MustNewConstMetric(c.notBeforeDesc, prometheus.GaugeValue, notBefore)
}

func (c *certExpiry) notAfter() float64 {
	_, notAfter := c.validity()
	return notAfter
}

// validity is the served certificate's NotBefore and NotAfter, both NaN when there is none.
func (c *certExpiry) validity() (notBefore, notAfter float64) {
	dir := c.dir.Load()
	if dir == nil {
		return math.NaN(), math.NaN()
	}
	b, err := os.ReadFile(filepath.Join(*dir, "tls.crt"))
	if err != nil {
		return math.NaN(), math.NaN()
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return math.NaN(), math.NaN()
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return math.NaN(), math.NaN()
	}
	return float64(cert.NotBefore.Unix()), float64(cert.NotAfter.Unix())
}
