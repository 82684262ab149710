package tcp

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// ErrIdentity is wrapped by the errors of a peer whose certificate names
// another member than it claims or than was dialled.
var ErrIdentity = errors.New("raftlease: peer identity")

// serverTLS returns the accepting side's TLS config: the caller's, with a
// client certificate required and checked against ClientCAs (RootCAs if
// unset), and the certificate required to name a member (ident), so that
// an outsider's certificate from the same CA fails the handshake.
func serverTLS(base *tls.Config, ident func(*x509.Certificate) (string, error)) *tls.Config {
	c := base.Clone()
	c.ClientAuth = tls.RequireAndVerifyClientCert
	if c.ClientCAs == nil {
		c.ClientCAs = c.RootCAs
	}
	user := c.VerifyConnection
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return fmt.Errorf("%w: no client certificate", ErrIdentity)
		}
		if _, err := ident(cs.PeerCertificates[0]); err != nil {
			return err
		}
		if user != nil {
			return user(cs)
		}
		return nil
	}
	return c
}

// clientTLS returns the dialing side's TLS config for reaching the member
// named want. The server's chain is verified against RootCAs; its
// certificate must name want. The address is not checked unless the
// caller set ServerName: a member certificate needs no IP or DNS names,
// and the member URI is a stronger check than the host it runs on.
func clientTLS(base *tls.Config, want uint64, wantName string, ident func(*x509.Certificate) (string, error), raftID func(string) uint64) *tls.Config {
	c := base.Clone()
	checkHost := c.ServerName != ""
	user := c.VerifyConnection
	if !checkHost {
		// The chain is verified below, as the standard verification
		// would, but without the host name.
		c.InsecureSkipVerify = true
	}
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return fmt.Errorf("%w: no server certificate", ErrIdentity)
		}
		leaf := cs.PeerCertificates[0]
		if !checkHost {
			now := time.Now()
			if base.Time != nil {
				now = base.Time()
			}
			opts := x509.VerifyOptions{Roots: base.RootCAs, Intermediates: x509.NewCertPool(), CurrentTime: now,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
			for _, ic := range cs.PeerCertificates[1:] {
				opts.Intermediates.AddCert(ic)
			}
			if _, err := leaf.Verify(opts); err != nil {
				return fmt.Errorf("raftlease: server certificate: %w", err)
			}
		}
		id, err := ident(leaf)
		if err != nil {
			return err
		}
		if raftID(id) != want {
			return fmt.Errorf("%w: dialled member %q but the certificate names member %q", ErrIdentity, wantName, id)
		}
		if user != nil {
			return user(cs)
		}
		return nil
	}
	return c
}
