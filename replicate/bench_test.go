package replicate_test

import (
	"context"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/memrepl"
	"github.com/hakit/hakit/storage"
	"github.com/hakit/hakit/storage/memstore"
)

// BenchmarkMemoryToMemory streams 100-byte records from an in-memory
// source to an in-memory sink. Every iteration runs the same stream twice,
// once with checkpoints off (only the final one at stop) and once with a
// checkpoint every 100 ms, each for perRun records (under a second here, many seconds at
// the target rate, so the 100 ms policy fires several times), and the
// benchmark reports both throughputs and the overhead of checkpointing.
func BenchmarkMemoryToMemory(b *testing.B) {
	const perRun = 20_000_000
	payloads := make([][]byte, 1024)
	for i := range payloads {
		payloads[i] = make([]byte, 100)
		payloads[i][0] = byte(i)
	}
	src := &memrepl.Generator{N: perRun, Data: func(i uint64) []byte { return payloads[i%1024] }}

	// CPU time of the process is measured too: on a shared machine it
	// is far less disturbed by other processes than wall time, so the
	// CPU-based overhead is the steadier figure.
	cpu := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			b.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	run := func(interval time.Duration) (time.Duration, time.Duration, uint64) {
		sink := memrepl.NewDiscardSink()
		s := &replicate.Stream{
			Source: src, Sink: sink, Store: memstore.New(), Key: "bench",
			CheckpointRecords: -1, CheckpointInterval: interval, HeartbeatInterval: -1,
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		runtime.GC() // start each run from the same heap state
		start, startCPU := time.Now(), cpu()
		go func() { done <- s.Run(ctx, 1) }()
		if err := sink.WaitLen(ctx, perRun); err != nil {
			b.Fatal(err)
		}
		elapsed, elapsedCPU := time.Since(start), cpu()-startCPU
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		return elapsed, elapsedCPU, s.Stats().Checkpoints
	}
	var off, on, offCPU, onCPU time.Duration
	var checkpoints uint64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Alternate the order so that neither side always runs first.
		for j := 0; j < 2; j++ {
			if (i+j)%2 == 0 {
				d, c, _ := run(-1)
				off, offCPU = off+d, offCPU+c
			} else {
				d, c, n := run(100 * time.Millisecond)
				on, onCPU = on+d, onCPU+c
				checkpoints += n
			}
		}
	}
	total := float64(perRun) * float64(b.N)
	b.ReportMetric(total/off.Seconds(), "records/s-ckpt-off")
	b.ReportMetric(total/on.Seconds(), "records/s-ckpt-100ms")
	b.ReportMetric(100*(on.Seconds()-off.Seconds())/off.Seconds(), "ckpt-overhead-%")
	b.ReportMetric(100*(onCPU.Seconds()-offCPU.Seconds())/offCPU.Seconds(), "ckpt-overhead-cpu-%")
	b.ReportMetric(float64(checkpoints)/float64(b.N), "ckpts/run")
}

// BenchmarkCheckpointCommit measures one checkpoint as the Stream writes
// it: encode, then CompareAndSwap under the token on a fenced memory
// store. Multiplied by the checkpoint rate it bounds the policy's cost
// independently of the noise of a whole-stream run.
func BenchmarkCheckpointCommit(b *testing.B) {
	ctx := context.Background()
	store := memstore.New()
	var ver storage.Version
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		cp := replicate.Checkpoint{Pos: memrepl.Pos(uint64(i)), Token: 1, Time: time.Unix(int64(i), 0)}
		v, err := store.CompareAndSwap(ctx, 1, "bench", ver, replicate.EncodeCheckpoint(cp))
		if err != nil {
			b.Fatal(err)
		}
		ver = v
	}
}
