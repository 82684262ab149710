package etcdtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// certs is the key material of a TLS test server: a self-signed CA, a
// server certificate for the loopback addresses and a client certificate,
// all issued by that CA and written as PEM files under one directory.
type certs struct {
	caFile, serverCert, serverKey string
	client                        tls.Certificate
	pool                          *x509.CertPool
}

// newCerts generates fresh ECDSA P-256 keys and certificates valid for one
// day in dir. Nothing is reused between servers, so a test cannot pass by
// accident with another server's credentials.
func newCerts(dir string) (*certs, error) {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "etcdtest CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}

	issue := func(serial int64, cn string, usage x509.ExtKeyUsage) (der []byte, key *ecdsa.PrivateKey, err error) {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			DNSNames:     []string{"localhost"},
			IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		}
		der, err = x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		return der, key, err
	}
	srvDER, srvKey, err := issue(2, "etcdtest server", x509.ExtKeyUsageServerAuth)
	if err != nil {
		return nil, err
	}
	cliDER, cliKey, err := issue(3, "etcdtest client", x509.ExtKeyUsageClientAuth)
	if err != nil {
		return nil, err
	}

	c := &certs{
		caFile:     filepath.Join(dir, "ca.pem"),
		serverCert: filepath.Join(dir, "server.pem"),
		serverKey:  filepath.Join(dir, "server-key.pem"),
		pool:       x509.NewCertPool(),
	}
	c.pool.AddCert(ca)
	srvKeyDER, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		return nil, err
	}
	for _, f := range []struct {
		name, typ string
		der       []byte
	}{
		{c.caFile, "CERTIFICATE", caDER},
		{c.serverCert, "CERTIFICATE", srvDER},
		{c.serverKey, "EC PRIVATE KEY", srvKeyDER},
	} {
		data := pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der})
		if err := os.WriteFile(f.name, data, 0o600); err != nil {
			return nil, fmt.Errorf("etcdtest: write %s: %w", f.name, err)
		}
	}
	c.client = tls.Certificate{Certificate: [][]byte{cliDER}, PrivateKey: cliKey}
	return c, nil
}

// clientConfig returns a fresh client TLS configuration that trusts only
// the test CA and presents the client certificate.
func (c *certs) clientConfig() *tls.Config {
	return &tls.Config{
		RootCAs:      c.pool,
		Certificates: []tls.Certificate{c.client},
		MinVersion:   tls.VersionTLS12,
	}
}
