package storagetest

import (
	"testing"
	"time"

	"github.com/hakit/hakit/storage"
)

// BenchmarkPut measures the cost of fencing on a Backend: sub-benchmark
// "plain" commits one 128-byte value under one key with Backend.Commit,
// "fenced" does the same through storage.Fenced with one token (a term's
// steady state). Both use a Backend from open, in the same run. "fenced"
// also reports throughput-ratio, its throughput over plain's (1.0: the
// fence is free); a backend doc can quote it.
func BenchmarkPut(b *testing.B, open func(b *testing.B) storage.Backend) {
	value := pattern(128, 1)
	var plain time.Duration // per op, from the last run of "plain"
	b.Run("plain", func(b *testing.B) {
		be := open(b)
		ctx := b.Context()
		for b.Loop() {
			if _, err := be.Commit(ctx, nil, []storage.Op{{Key: "bench/checkpoint", Value: value}}); err != nil {
				b.Fatal(err)
			}
		}
		plain = b.Elapsed() / time.Duration(b.N)
	})
	b.Run("fenced", func(b *testing.B) {
		s := storage.Fenced(open(b))
		ctx := b.Context()
		for b.Loop() {
			if _, err := s.Put(ctx, 1, "bench/checkpoint", value); err != nil {
				b.Fatal(err)
			}
		}
		fenced := b.Elapsed() / time.Duration(b.N)
		if plain > 0 && fenced > 0 {
			b.ReportMetric(float64(plain)/float64(fenced), "throughput-ratio")
		}
	})
}
