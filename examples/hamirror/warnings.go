package main

import (
	"bytes"
	"encoding/pem"
	"fmt"
	"os"
)

// warnings returns what is allowed but unwise in c, one sentence each,
// for the daemon to log at start: a CA shared between the HTTP API and
// the Raft links, and secret files that others can read. Files that
// cannot be read are left to the errors that loading them gives.
func (c *Config) warnings() []string {
	var out []string
	if c.Backend != "etcd" && c.Raft.TLS != nil && c.TLS != nil && c.TLS.CA != "" && sharesCert(c.TLS.CA, c.Raft.TLS.CA) {
		out = append(out, fmt.Sprintf("raft.tls.ca and tls.ca share a CA (%s, %s): a CA that also signs the API's "+
			"certificates is one more party that can make a member certificate; give the Raft links a CA of their own "+
			"(\"hamirror certs\" makes one)", c.Raft.TLS.CA, c.TLS.CA))
	}
	for _, s := range c.secretFiles() {
		fi, err := os.Stat(s.path)
		if err != nil {
			continue
		}
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			out = append(out, fmt.Sprintf("%s: %s holds a secret but its mode %04o lets others read it; chmod 600 it", s.field, s.path, perm))
		}
	}
	return out
}

type secretFile struct{ field, path string }

// secretFiles lists the configured files that hold secrets.
func (c *Config) secretFiles() []secretFile {
	var out []secretFile
	add := func(field, path string) {
		if path != "" {
			out = append(out, secretFile{field, path})
		}
	}
	add("admin_token_file", c.AdminTokenFile)
	if c.TLS != nil {
		add("tls.key", c.TLS.Key)
	}
	if c.Raft.TLS != nil {
		add("raft.tls.key", c.Raft.TLS.Key)
	}
	if c.Etcd.TLS != nil {
		add("etcd.tls.key", c.Etcd.TLS.Key)
	}
	if p := c.Source.Postgres; p != nil {
		add("source.postgres.dsn_file", p.DSNFile)
	}
	if p := c.Sink.Postgres; p != nil {
		add("sink.postgres.dsn_file", p.DSNFile)
	}
	if r := c.Switchers.RFC2136; r != nil {
		add("switchers.rfc2136.secret_file", r.SecretFile)
	}
	return out
}

// sharesCert reports whether the PEM bundles at a and b are the same file
// or hold a certificate in common.
func sharesCert(a, b string) bool {
	if a == b {
		return true
	}
	ca, errA := os.ReadFile(a)
	cb, errB := os.ReadFile(b)
	if errA != nil || errB != nil {
		return false
	}
	inA := map[string]bool{}
	for _, der := range pemCerts(ca) {
		inA[string(der)] = true
	}
	for _, der := range pemCerts(cb) {
		if inA[string(der)] {
			return true
		}
	}
	return false
}

func pemCerts(b []byte) [][]byte {
	var out [][]byte
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return out
		}
		if blk.Type == "CERTIFICATE" {
			out = append(out, bytes.Clone(blk.Bytes))
		}
	}
}
