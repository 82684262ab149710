package dns_test

import (
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/hakit/hakit/dns"
	"github.com/hakit/hakit/fence"
)

// p50 reports the median of the durations as p50-ms.
func p50(b *testing.B, ds []time.Duration) {
	b.Helper()
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	b.ReportMetric(float64(ds[len(ds)/2])/float64(time.Millisecond), "p50-ms")
}

func BenchmarkHealthServeHTTP(b *testing.B) {
	h := &dns.Health{}
	if err := h.Promote(b.Context(), 1); err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodGet, "/health", nil)
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
	}
}

// BenchmarkMultiPromoteDemote measures Multi's own cost over three
// in-memory switchers; the baseline calls them directly.
func BenchmarkMultiPromoteDemote(b *testing.B) {
	for _, bb := range []struct {
		name  string
		multi bool
	}{{"baseline-direct", false}, {"multi", true}} {
		b.Run(bb.name, func(b *testing.B) {
			hs := []dns.Switcher{&dns.Health{}, &dns.Health{}, &dns.Health{}}
			m := dns.Multi(hs...)
			ctx := b.Context()
			tok := fence.Token(0)
			b.ReportAllocs()
			for b.Loop() {
				tok++
				if bb.multi {
					_ = m.Promote(ctx, tok)
					_ = m.Demote(ctx, tok)
					continue
				}
				for _, h := range hs {
					_ = h.Promote(ctx, tok)
				}
				for i := len(hs) - 1; i >= 0; i-- {
					_ = hs[i].Demote(ctx, tok)
				}
			}
		})
	}
}

// BenchmarkExecPromote measures a hook run through Exec against running
// the same program with os/exec directly.
func BenchmarkExecPromote(b *testing.B) {
	truePath, err := exec.LookPath("true")
	if err != nil {
		b.Skip("no true(1) in PATH")
	}
	b.Run("baseline-os-exec", func(b *testing.B) {
		var ds []time.Duration
		for b.Loop() {
			start := time.Now()
			if err := exec.Command(truePath).Run(); err != nil {
				b.Fatal(err)
			}
			ds = append(ds, time.Since(start))
		}
		p50(b, ds)
	})
	b.Run("exec", func(b *testing.B) {
		e, err := dns.NewExec(dns.ExecConfig{Member: "m", Promote: [][]string{{truePath}}})
		if err != nil {
			b.Fatal(err)
		}
		var ds []time.Duration
		tok := fence.Token(0)
		for b.Loop() {
			tok++
			start := time.Now()
			if err := e.Promote(b.Context(), tok); err != nil {
				b.Fatal(err)
			}
			ds = append(ds, time.Since(start))
		}
		p50(b, ds)
	})
}
