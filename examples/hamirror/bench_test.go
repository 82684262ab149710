package main

import (
	"context"
	"testing"
	"time"
)

// BenchmarkDemoFailover runs the demo's acts b.N times on the embedded
// Raft backend with its defaults (100 ms tick, 1 s election timeout, so a
// follower waits 1 to 2 s before it stands) and reports, per run:
//
//	failover-ms    kill -9 of the active member -> the successor's first acknowledged batch
//	elected-ms     kill -9 -> the successor active (its switchers promoted)
//	switchover-ms  operator request -> the named member's first acknowledged batch
//	pause-ms       the active member paused mid-write -> the successor's first acknowledged batch
//
// The switchover is the baseline: the same handover done gracefully
// (drain, final checkpoint, Raft leadership transfer), so the difference is
// the cost of detecting a dead member, bounded by the election timeout.
func BenchmarkDemoFailover(b *testing.B) {
	var fail, elect, sw, pause time.Duration
	for i := 0; b.Loop(); i++ {
		res, err := RunDemo(context.Background(), DemoOptions{Rate: 2000, Steady: 300 * time.Millisecond, Dir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		if !res.Equal {
			b.Fatalf("run %d: target != source: lost %d, duplicated %d", i, res.Lost, res.Duplicated)
		}
		fail += res.Failover
		elect += res.Elected
		sw += res.Switchover
		pause += res.PauseFailover
	}
	n := float64(b.N)
	b.ReportMetric(float64(fail.Milliseconds())/n, "failover-ms")
	b.ReportMetric(float64(elect.Milliseconds())/n, "elected-ms")
	b.ReportMetric(float64(sw.Milliseconds())/n, "switchover-ms")
	b.ReportMetric(float64(pause.Milliseconds())/n, "pause-ms")
	b.ReportMetric(0, "ns/op")
}
