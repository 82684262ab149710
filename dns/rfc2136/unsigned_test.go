package rfc2136

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"

	mdns "github.com/miekg/dns"

	"github.com/hakit/hakit/dns"
)

// stripProxy relays DNS over TCP to server and removes the TSIG record
// from every answer: an attacker on the path who answers for the server
// without the key.
func stripProxy(t *testing.T, server string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go relayStripped(c, server)
		}
	}()
	return ln.Addr().String()
}

func relayStripped(c net.Conn, server string) {
	defer c.Close()
	up, err := net.Dial("tcp", server)
	if err != nil {
		return
	}
	defer up.Close()
	for {
		q, err := readTCPMsg(c)
		if err != nil {
			return
		}
		if _, err := up.Write(q); err != nil {
			return
		}
		a, err := readTCPMsg(up)
		if err != nil {
			return
		}
		m := new(mdns.Msg)
		if err := m.Unpack(a[2:]); err != nil {
			return
		}
		var extra []mdns.RR
		for _, rr := range m.Extra {
			if rr.Header().Rrtype != mdns.TypeTSIG {
				extra = append(extra, rr)
			}
		}
		m.Extra = extra
		p, err := m.Pack()
		if err != nil {
			return
		}
		if _, err := c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(p))), p...)); err != nil {
			return
		}
	}
}

// readTCPMsg reads one length-prefixed DNS message, prefix included.
func readTCPMsg(r io.Reader) ([]byte, error) {
	var l [2]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, err
	}
	b := make([]byte, 2+int(binary.BigEndian.Uint16(l[:])))
	copy(b, l[:])
	_, err := io.ReadFull(r, b[2:])
	return b, err
}

// TestUnsignedAnswerRefused: with a key configured, an answer that
// carries no TSIG is refused with a permanent ErrAuth, and the switcher
// reports no success it cannot trust. Before, miekg/dns verified only
// answers that carried a signature.
func TestUnsignedAnswerRefused(t *testing.T) {
	k := startKnot(t)
	cfg := k.config(newName(), "a")
	cfg.Server = stripProxy(t, k.Addr)
	err := mustNew(t, cfg).Promote(t.Context(), 1)
	if !errors.Is(err, ErrAuth) || !dns.IsPermanent(err) || !strings.Contains(err.Error(), "carries no TSIG") {
		t.Fatalf("Promote through a proxy that strips TSIG = %v, want a permanent ErrAuth", err)
	}
}
