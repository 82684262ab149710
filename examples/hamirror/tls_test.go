package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeTestPKI writes a CA and one certificate for 127.0.0.1, good for
// both server and client authentication, as PEM files in dir.
func writeTestPKI(t *testing.T, dir string) TLSFiles {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hamirror test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "hamirror member"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	f := TLSFiles{Cert: filepath.Join(dir, "member.crt"), Key: filepath.Join(dir, "member.key"), CA: filepath.Join(dir, "ca.crt")}
	for path, block := range map[string]*pem.Block{
		f.Cert: {Type: "CERTIFICATE", Bytes: der},
		f.Key:  {Type: "EC PRIVATE KEY", Bytes: keyDER},
		f.CA:   {Type: "CERTIFICATE", Bytes: caDER},
	} {
		if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// TestDaemonTLS runs the raft cluster with the HTTP API over TLS and
// mutual TLS between the Raft members, then checks the operator commands
// over https with the CA.
func TestDaemonTLS(t *testing.T) {
	pki := writeTestPKI(t, t.TempDir())
	raftDir := writeRaftCerts(t)
	cfgs := daemonConfigs(t, 3, "raft", nil)
	for _, c := range cfgs {
		for id, m := range c.Members {
			m.API = strings.Replace(m.API, "http://", "https://", 1)
			c.Members[id] = m
		}
		files := pki
		c.TLS = &files
		c.Raft.TLS = &TLSFiles{Cert: filepath.Join(raftDir, c.ID+".crt"), Key: filepath.Join(raftDir, c.ID+".key"), CA: filepath.Join(raftDir, "raft-ca.crt")}
		c.Raft.Insecure = false
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		if w := c.warnings(); len(w) != 0 {
			t.Errorf("member %s: warnings %q", c.ID, w)
		}
	}
	testDaemonFailover(t, cfgs, pki.CA, nil)
}

// writeRaftCerts writes a Raft CA and certificates for members a, b and c
// with "hamirror certs", and returns the directory.
func writeRaftCerts(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "raft-pki")
	var out strings.Builder
	if code := runMain(t.Context(), []string{"certs", "-dir", dir, "-members", "a=127.0.0.1,b,c", "-days", "2"}, &out, &out); code != 0 {
		t.Fatalf("hamirror certs exited %d:\n%s", code, out.String())
	}
	for _, name := range []string{"raft-ca.crt", "raft-ca.key", "a.crt", "a.key", "b.crt", "b.key", "c.crt", "c.key"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(name, ".key") && fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %04o, want 0600", name, fi.Mode().Perm())
		}
	}
	if code := runMain(t.Context(), []string{"certs", "-dir", dir, "-members", "a"}, &out, &out); code == 0 {
		t.Error("hamirror certs overwrote existing files")
	}
	return dir
}

func TestTLSFileErrorsNameTheField(t *testing.T) {
	dir := t.TempDir()
	missing := &TLSFiles{Cert: filepath.Join(dir, "no.crt"), Key: filepath.Join(dir, "no.key"), CA: filepath.Join(dir, "no-ca.crt")}
	if _, err := serverTLS("tls", missing); err == nil || !strings.Contains(err.Error(), "tls: load cert") {
		t.Errorf("serverTLS = %v, want an error naming tls", err)
	}
	if _, err := mutualTLS("raft.tls", missing); err == nil || !strings.Contains(err.Error(), "raft.tls.ca") {
		t.Errorf("mutualTLS = %v, want an error naming raft.tls.ca", err)
	}
	notPEM := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(notPEM, []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := clientTLS("etcd.tls", &TLSFiles{CA: notPEM}); err == nil || !strings.Contains(err.Error(), "etcd.tls.ca: "+notPEM+" holds no PEM certificate") {
		t.Errorf("clientTLS = %v", err)
	}
}
