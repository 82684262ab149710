package storagetest

import (
	"testing"
	"time"

	"github.com/hakit/hakit/storage"
)

// BenchmarkPut measures the cost of fencing on a Backend, writing one
// 128-byte value under one key, with backends from open:
//   - "plain": Backend.Commit without conditions;
//   - "fenced": storage.Fenced's Put with one token (a term's steady
//     state);
//   - "interleaved": both in alternating blocks of 8 in the same loop, so
//     that drift in the machine (a disk's write-back, another process)
//     hits both alike. It reports plain-ns/op, fenced-ns/op and
//     throughput-ratio, fenced throughput over plain (1.0: the fence is
//     free).
func BenchmarkPut(b *testing.B, open func(b *testing.B) storage.Backend) {
	value := pattern(128, 1)
	const key = "bench/checkpoint"
	b.Run("plain", func(b *testing.B) {
		be := open(b)
		ctx := b.Context()
		for b.Loop() {
			if _, err := be.Commit(ctx, nil, []storage.Op{{Key: key, Value: value}}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fenced", func(b *testing.B) {
		s := storage.Fenced(open(b))
		ctx := b.Context()
		for b.Loop() {
			if _, err := s.Put(ctx, 1, key, value); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("interleaved", func(b *testing.B) {
		be := open(b)
		s := storage.Fenced(be)
		ctx := b.Context()
		const block = 8
		var plain, fenced time.Duration
		var n int
		for b.Loop() {
			start := time.Now()
			for range block {
				if _, err := be.Commit(ctx, nil, []storage.Op{{Key: key + "/plain", Value: value}}); err != nil {
					b.Fatal(err)
				}
			}
			mid := time.Now()
			for range block {
				if _, err := s.Put(ctx, 1, key+"/fenced", value); err != nil {
					b.Fatal(err)
				}
			}
			plain += mid.Sub(start)
			fenced += time.Since(mid)
			n += block
		}
		b.ReportMetric(float64(plain.Nanoseconds())/float64(n), "plain-ns/op")
		b.ReportMetric(float64(fenced.Nanoseconds())/float64(n), "fenced-ns/op")
		b.ReportMetric(float64(plain)/float64(fenced), "throughput-ratio")
	})
}
