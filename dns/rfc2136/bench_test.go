//go:build linux

package rfc2136

import (
	"slices"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/hakit/hakit/fence"
)

func p50(b *testing.B, ds []time.Duration) {
	b.Helper()
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	b.ReportMetric(float64(ds[len(ds)/2])/float64(time.Millisecond), "p50-ms")
}

// BenchmarkPromote measures a takeover (read, conditional update, two
// confirming reads, one TCP connection) against knotd; the baseline is one
// TSIG-signed query on a fresh connection.
func BenchmarkPromote(b *testing.B) {
	k := startKnot(b)
	b.Run("baseline-signed-query", func(b *testing.B) {
		c := &mdns.Client{Net: "tcp", TsigSecret: map[string]string{k.KeyName: k.Secret}}
		var ds []time.Duration
		for b.Loop() {
			m := new(mdns.Msg)
			m.SetQuestion(k.Zone, mdns.TypeSOA)
			m.SetTsig(k.KeyName, mdns.HmacSHA256, 300, time.Now().Unix())
			start := time.Now()
			if _, _, err := c.Exchange(m, k.Addr); err != nil {
				b.Fatal(err)
			}
			ds = append(ds, time.Since(start))
		}
		p50(b, ds)
	})
	b.Run("promote-takeover", func(b *testing.B) {
		name := newName()
		sws := []*Switcher{mustNewB(b, k.config(name, "a", "192.0.2.1")), mustNewB(b, k.config(name, "b", "192.0.2.2"))}
		var ds []time.Duration
		tok := fence.Token(0)
		for b.Loop() {
			tok++
			start := time.Now()
			if err := sws[tok%2].Promote(b.Context(), tok); err != nil {
				b.Fatal(err)
			}
			ds = append(ds, time.Since(start))
		}
		p50(b, ds)
	})
}

func mustNewB(b *testing.B, cfg Config) *Switcher {
	b.Helper()
	s, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return s
}
