package raftlog

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// BenchmarkSave measures Save with fsync, the latency a Raft node pays
// before it may send the messages of one Ready. Each op is one Save; the
// batch sizes show how batching amortises the sync. p50/p99 are the
// latency percentiles of single Saves, in microseconds, and entries/s is
// the throughput. The baseline is batch=1 in the same run.
func BenchmarkSave(b *testing.B) {
	// The floor: append the same number of bytes as a one-entry Save to a
	// plain file and fdatasync it.
	b.Run("baseline=write+fdatasync/150B", func(b *testing.B) {
		f, err := os.Create(filepath.Join(b.TempDir(), "raw"))
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		buf := make([]byte, 150)
		lat := make([]time.Duration, 0, b.N)
		for range b.N {
			start := time.Now()
			if _, err := f.Write(buf); err != nil {
				b.Fatal(err)
			}
			if err := fdatasync(f); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
		}
		b.StopTimer()
		reportLatency(b, lat)
	})
	for _, batch := range []int{1, 16, 128} {
		b.Run(fmt.Sprintf("batch=%d/entry=100B", batch), func(b *testing.B) {
			l, err := Open(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			data := make([]byte, 100)
			next := uint64(1)
			lat := make([]time.Duration, 0, b.N)
			b.SetBytes(int64(batch * len(data)))
			b.ResetTimer()
			for range b.N {
				es := make([]*raftpb.Entry, batch)
				for k := range es {
					es[k] = &raftpb.Entry{Index: new(next), Term: new(uint64(1)), Data: data}
					next++
				}
				hs := hardState(1, 1, next-1)
				start := time.Now()
				if err := l.Save(hs, es, nil); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			reportLatency(b, lat)
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}

func reportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds())
	}
	b.ReportMetric(pct(0.50), "p50-us")
	b.ReportMetric(pct(0.99), "p99-us")
}

// BenchmarkOpen measures recovery of a log of 10,000 entries.
func BenchmarkOpen(b *testing.B) {
	dir := b.TempDir()
	l, err := Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	for i := uint64(1); i <= 10000; i += 100 {
		if err := l.Save(hardState(1, 1, i+99), ents(i, i+99, 1), nil); err != nil {
			b.Fatal(err)
		}
	}
	l.Close()
	b.ResetTimer()
	for range b.N {
		l, err := Open(dir)
		if err != nil {
			b.Fatal(err)
		}
		l.Close()
	}
}
