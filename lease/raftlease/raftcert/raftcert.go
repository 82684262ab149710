// Package raftcert says how a certificate names a member of a raftlease
// group, and issues such certificates: a small CA for tests, for the
// walkthrough in examples/hamirror, and for groups that want a CA of
// their own and no other PKI.
//
// # The identity rule
//
// A member certificate carries the URI subject alternative name
//
//	hakit://member/<ID>
//
// where <ID> is the member's raftlease.Config.ID. MemberID reads it; a
// certificate with no such URI, or with more than one, names no member.
// The common name and DNS names are not read: a CA that also signs
// certificates for other services (an API, a database) must not make one
// of them a member because of its host name. raftlease.Config.PeerIdentity
// replaces the rule where an existing PKI names members otherwise.
//
// Even so, give the Raft links a CA of their own: anyone who can have the
// CA sign a certificate with a member URI can join the group as that
// member.
package raftcert

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"strings"
	"time"
)

// URIScheme and URIHost make the URI SAN that names a member:
// hakit://member/<ID>.
const (
	URIScheme = "hakit"
	URIHost   = "member"
)

// ErrNoMember is wrapped by MemberID's errors: the certificate names no
// member, or more than one.
var ErrNoMember = errors.New("raftcert: certificate names no member")

// MemberURI returns the URI SAN naming member id.
func MemberURI(id string) *url.URL {
	return &url.URL{Scheme: URIScheme, Host: URIHost, Path: "/" + id}
}

// MemberID returns the member that cert names: the ID in its one URI SAN
// hakit://member/<ID>. It fails, wrapping ErrNoMember, for a certificate
// with none, with more than one, or with one that carries anything but
// the ID (user, query, fragment, a further path segment).
func MemberID(cert *x509.Certificate) (string, error) {
	var id string
	found := 0
	for _, u := range cert.URIs {
		if u.Scheme != URIScheme || u.Host != URIHost {
			continue
		}
		found++
		name := strings.TrimPrefix(u.Path, "/")
		if u.User != nil || u.RawQuery != "" || u.Fragment != "" || name == "" || strings.Contains(name, "/") {
			return "", fmt.Errorf("%w: certificate %q: malformed member URI %q", ErrNoMember, cert.Subject.CommonName, u.String())
		}
		id = name
	}
	switch found {
	case 0:
		return "", fmt.Errorf("%w: certificate %q (serial %s) has no URI SAN %s://%s/<ID>", ErrNoMember,
			cert.Subject.CommonName, cert.SerialNumber, URIScheme, URIHost)
	case 1:
		return id, nil
	}
	return "", fmt.Errorf("%w: certificate %q names %d members", ErrNoMember, cert.Subject.CommonName, found)
}

// CA signs member certificates. It keeps its key in memory; CertPEM and
// KeyPEM write them out.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// NewCA makes a self-signed CA named commonName, valid from an hour ago
// (clock skew) for validity, with an ECDSA P-256 key.
func NewCA(commonName string, validity time.Duration) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("raftcert: CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: commonName},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(validity),
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("raftcert: CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("raftcert: CA certificate: %w", err)
	}
	return &CA{Cert: cert, Key: key}, nil
}

// Pool returns a pool holding only this CA, for RootCAs and ClientCAs.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Issue signs a certificate for member id, usable to accept and to dial
// (server and client authentication), valid from an hour ago for
// validity. hosts (IP addresses or DNS names) are added as SANs for
// tools that check them; raftlease does not need them.
func (ca *CA) Issue(id string, validity time.Duration, hosts ...string) (tls.Certificate, error) {
	return ca.issue(id, validity, hosts, []*url.URL{MemberURI(id)})
}

// IssueOther signs a certificate from this CA that names no member: the
// certificate of another service sharing the CA. Tests use it to show
// that it is refused.
func (ca *CA) IssueOther(commonName string, validity time.Duration, hosts ...string) (tls.Certificate, error) {
	return ca.issue(commonName, validity, hosts, nil)
}

func (ca *CA) issue(cn string, validity time.Duration, hosts []string, uris []*url.URL) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("raftcert: key for %q: %w", cn, err)
	}
	serial, err := newSerial()
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(validity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:        uris,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("raftcert: certificate for %q: %w", cn, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("raftcert: certificate for %q: %w", cn, err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// Config returns the mutual-TLS configuration of a member holding cert:
// it presents cert, and trusts only this CA, both ways. raftlease adds
// the identity checks.
func (ca *CA) Config(cert tls.Certificate) *tls.Config {
	pool := ca.Pool()
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert,
		MinVersion: tls.VersionTLS13,
	}
}

// MemberConfig issues a certificate for member id valid for a day and
// returns its Config: the one-line setup for tests.
func (ca *CA) MemberConfig(id string) (*tls.Config, error) {
	cert, err := ca.Issue(id, 24*time.Hour)
	if err != nil {
		return nil, err
	}
	return ca.Config(cert), nil
}

// CertPEM returns the CA certificate in PEM.
func (ca *CA) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// KeyPEM returns the CA's private key in PEM (PKCS #8). Keep it off the
// members: it signs new members.
func (ca *CA) KeyPEM() ([]byte, error) { return keyPEM(ca.Key) }

// CertPEM returns cert's chain in PEM.
func CertPEM(cert tls.Certificate) []byte {
	var out []byte
	for _, der := range cert.Certificate {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	return out
}

// KeyPEM returns cert's private key in PEM (PKCS #8).
func KeyPEM(cert tls.Certificate) ([]byte, error) { return keyPEM(cert.PrivateKey) }

func keyPEM(key any) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("raftcert: encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func newSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("raftcert: serial number: %w", err)
	}
	return n, nil
}
