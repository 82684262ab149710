package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// serverTLS loads the HTTP API's certificate. It returns nil for nil.
func serverTLS(field string, f *TLSFiles) (*tls.Config, error) {
	if f == nil {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: load cert %s and key %s: %v", ErrConfig, field, f.Cert, f.Key, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// clientTLS loads a client configuration: the CA that verifies the
// server (nil: the system roots) and, if set, a client certificate.
func clientTLS(field string, f *TLSFiles) (*tls.Config, error) {
	if f == nil {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if f.CA != "" {
		pool, err := loadPool(field+".ca", f.CA)
		if err != nil {
			return nil, err
		}
		c.RootCAs = pool
	}
	if f.Cert != "" {
		cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: load cert %s and key %s: %v", ErrConfig, field, f.Cert, f.Key, err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// mutualTLS loads the Raft transport's configuration: the same config
// accepts and dials, and each side requires the other's certificate,
// signed by the CA.
func mutualTLS(field string, f *TLSFiles) (*tls.Config, error) {
	if f == nil {
		return nil, nil
	}
	c, err := clientTLS(field, f)
	if err != nil {
		return nil, err
	}
	c.ClientCAs = c.RootCAs
	c.ClientAuth = tls.RequireAndVerifyClientCert
	return c, nil
}

func loadPool(field, path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrConfig, field, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%w: %s: %s holds no PEM certificate", ErrConfig, field, path)
	}
	return pool, nil
}
