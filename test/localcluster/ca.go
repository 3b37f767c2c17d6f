package localcluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"
)

// CA is a throwaway certificate authority for tests and harnesses: serving certificates for a
// webhook on loopback, client certificates for an API server that must prove itself to it.
type CA struct {
	PEM    []byte
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	serial atomic.Int64
}

// NewCA makes a CA valid for a week.
func NewCA(name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(7 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	ca := &CA{PEM: pemBlock("CERTIFICATE", der), cert: cert, key: key}
	ca.serial.Store(1)
	return ca, nil
}

// Issue signs a certificate for commonName: a serving one for the IPs and DNS names given, or,
// with none, a client one. It returns the certificate and key as PEM.
func (ca *CA) Issue(commonName string, ips []net.IP, dnsNames ...string) (certPEM, keyPEM []byte, err error) {
	now := time.Now()
	return ca.issue(pkix.Name{CommonName: commonName}, ips, dnsNames, now.Add(-time.Hour), now.Add(7*24*time.Hour))
}

// IssueServingFor signs a serving certificate for the DNS names valid from notBefore to notAfter
// (one near the end of its life, for the certificate expiry alert).
func (ca *CA) IssueServingFor(notBefore, notAfter time.Time, dnsNames ...string) (certPEM, keyPEM []byte, err error) {
	return ca.issue(pkix.Name{CommonName: dnsNames[0]}, nil, dnsNames, notBefore, notAfter)
}

// IssueClient signs a client certificate for commonName in groups (the subject's organization,
// e.g. system:masters).
func (ca *CA) IssueClient(commonName string, groups ...string) (certPEM, keyPEM []byte, err error) {
	now := time.Now()
	return ca.issue(pkix.Name{CommonName: commonName, Organization: groups}, nil, nil, now.Add(-time.Hour), now.Add(7*24*time.Hour))
}

func (ca *CA) issue(subject pkix.Name, ips []net.IP, dnsNames []string, notBefore, notAfter time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(ca.serial.Add(1)), Subject: subject,
		NotBefore: notBefore, NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if len(ips) > 0 || len(dnsNames) > 0 {
		tmpl.ExtKeyUsage, tmpl.IPAddresses, tmpl.DNSNames = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, ips, dnsNames
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pemBlock("CERTIFICATE", der), pemBlock("EC PRIVATE KEY", keyDER), nil
}

// WriteServing writes tls.crt and tls.key for a server at the IPs and DNS names into dir.
func (ca *CA) WriteServing(dir string, ips []net.IP, dnsNames ...string) error {
	cert, key, err := ca.Issue("flowauth-test-serving", ips, dnsNames...)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), cert, 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "tls.key"), key, 0o600)
}
