package raftcert_test

import (
	"crypto/x509"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hakit/hakit/lease/raftlease/raftcert"
)

func TestMemberID(t *testing.T) {
	ca, err := raftcert.NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue("replicator-1", time.Hour, "10.0.0.1", "r1.example.com")
	if err != nil {
		t.Fatal(err)
	}
	if id, err := raftcert.MemberID(cert.Leaf); err != nil || id != "replicator-1" {
		t.Fatalf("MemberID = %q, %v", id, err)
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("member certificate does not verify for client auth: %v", err)
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Fatalf("member certificate does not verify for server auth: %v", err)
	}
	other, err := ca.IssueOther("replicator-1", time.Hour, "replicator-1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raftcert.MemberID(other.Leaf); !errors.Is(err, raftcert.ErrNoMember) {
		t.Fatalf("a certificate whose CN and DNS name are a member ID: %v, want ErrNoMember", err)
	}
	for _, tc := range []struct {
		name string
		uris []string
	}{
		{"two members", []string{"hakit://member/a", "hakit://member/b"}},
		{"empty ID", []string{"hakit://member/"}},
		{"nested path", []string{"hakit://member/a/b"}},
		{"query", []string{"hakit://member/a?x=1"}},
		{"user", []string{"hakit://u@member/a"}},
		{"other scheme only", []string{"spiffe://member/a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &x509.Certificate{}
			for _, s := range tc.uris {
				u, err := url.Parse(s)
				if err != nil {
					t.Fatal(err)
				}
				c.URIs = append(c.URIs, u)
			}
			if id, err := raftcert.MemberID(c); !errors.Is(err, raftcert.ErrNoMember) {
				t.Fatalf("MemberID = %q, %v; want ErrNoMember", id, err)
			}
		})
	}
	if u := raftcert.MemberURI("a b").String(); u != "hakit://member/a%20b" {
		t.Fatalf("MemberURI = %s", u)
	}
}

func TestPEM(t *testing.T) {
	ca, err := raftcert.NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue("a", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	key, err := raftcert.KeyPEM(cert)
	if err != nil || !strings.Contains(string(key), "PRIVATE KEY") {
		t.Fatalf("KeyPEM = %q, %v", key, err)
	}
	if c := string(raftcert.CertPEM(cert)); strings.Count(c, "BEGIN CERTIFICATE") != 1 {
		t.Fatalf("CertPEM = %q", c)
	}
	if c := string(ca.CertPEM()); !strings.Contains(c, "BEGIN CERTIFICATE") {
		t.Fatalf("CA CertPEM = %q", c)
	}
}
