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

// certExpiry exports when the serving certificate in --cert-dir expires, read at each scrape
// from the file the server serves (so a rotation shows at once). The chart's
// FlowauthCertificateExpiringSoon alert reads it.
type certExpiry struct {
	dir  atomic.Pointer[string]
	desc *prometheus.Desc
}

func newCertExpiry() *certExpiry {
	return &certExpiry{desc: prometheus.NewDesc("flowauth_serving_certificate_expiry_timestamp_seconds",
		"When the serving certificate in --cert-dir expires (its NotAfter, Unix seconds); NaN while there is no readable certificate.", nil, nil)}
}

func (c *certExpiry) setDir(dir string) { c.dir.Store(&dir) }

func (c *certExpiry) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *certExpiry) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, c.notAfter())
}

func (c *certExpiry) notAfter() float64 {
	dir := c.dir.Load()
	if dir == nil {
		return math.NaN()
	}
	b, err := os.ReadFile(filepath.Join(*dir, "tls.crt"))
	if err != nil {
		return math.NaN()
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return math.NaN()
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return math.NaN()
	}
	return float64(cert.NotAfter.Unix())
}
