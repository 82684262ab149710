package raftlease

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"testing"
	"time"
)

// BenchmarkMemory measures the memory of a three-member group on loopback
// TCP with fsync, all in this process, after 10000 fenced Puts of
// distinct 256-byte values (2.44 MiB of stored values; the default
// SnapshotEntries makes one snapshot during the run):
//
//   - live-MiB/member: the live heap after the writes, less the heap
//     before the group started, divided by three;
//   - peak-live-MiB: the largest live heap the collector measured during
//     the writes (GOGC 25, sampled every millisecond), less the same
//     baseline, for the three members;
//   - peak/steady: the peak per member over the live heap per member.
//
// b.N is ignored past the first iteration: one run is one measurement.
func BenchmarkMemory(b *testing.B) {
	const writes, size = 10000, 256
	for range b.N {
		old := debug.SetGCPercent(25)
		base := liveHeap()
		c := benchCluster(b, func(c *Config) { *c = withBenchDefaults(*c) })
		ctx := context.Background()
		g := c.groups["a"]
		term, err := g.Campaign(ctx)
		if err != nil {
			b.Fatal(err)
		}
		var peak uint64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
			t := time.NewTicker(time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
				}
				metrics.Read(s)
				peak = max(peak, s[0].Value.Uint64())
			}
		}()
		val := make([]byte, size)
		start := time.Now()
		for i := range writes {
			val[0], val[1] = byte(i), byte(i>>8)
			if _, err := g.Store().Put(ctx, term.Token(), fmt.Sprintf("key/%06d", i), val); err != nil {
				b.Fatal(err)
			}
		}
		took := time.Since(start)
		close(stop)
		wg.Wait()
		debug.SetGCPercent(old)
		live := liveHeap()
		perMember := float64(live-base) / 3 / (1 << 20)
		peakAll := float64(peak-base) / (1 << 20)
		b.ReportMetric(perMember, "live-MiB/member")
		b.ReportMetric(peakAll, "peak-live-MiB")
		b.ReportMetric(peakAll/3/perMember, "peak/steady")
		b.ReportMetric(float64(writes)/took.Seconds(), "writes/s")
		b.StopTimer()
		c.closeAll()
		b.StartTimer()
		if b.N > 1 {
			b.SkipNow()
		}
	}
}

// liveHeap returns the heap in use by reachable objects after a full
// collection.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
