package raftlease

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"
)

// TestGroupTLS runs a group whose members authenticate each other with
// certificates made here.
func TestGroupTLS(t *testing.T) {
	ca := newTestCA(t)
	c := &cluster{t: t, peers: map[string]string{}, dirs: map[string]string{}, lns: map[string]net.Listener{},
		nets: map[string]*partTransport{}, groups: map[string]*Group{}}
	t.Cleanup(c.closeAll)
	for _, id := range []string{"a", "b", "c"} {
		c.addSlot(id)
		c.lns[id].Close() // the group listens itself
	}
	for _, id := range c.ids {
		cfg := c.config(id)
		cfg.TLS = ca.config(t, id)
		g, err := Start(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		c.groups[id] = g
	}
	ctx := testCtx(t, 20*time.Second)
	term, err := c.groups["b"].Campaign(ctx)
	if err != nil {
		t.Fatal(err)
	}
	acked := writeKeys(t, c.groups["b"], term.Token(), "tls", 5)
	for _, g := range c.groups {
		checkKeys(t, g, acked)
	}
}

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hakit test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// config returns a mutual-TLS config for member id: a certificate for
// 127.0.0.1 usable as server and client, trusting only this CA.
func (ca *testCA) config(t *testing.T, id string) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: id},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		RootCAs:      ca.pool, ClientCAs: ca.pool, ClientAuth: tls.RequireAndVerifyClientCert,
		MinVersion: tls.VersionTLS13,
	}
}
