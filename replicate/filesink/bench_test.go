package filesink

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/filelog"
	"github.com/hakit/hakit/storage/memstore"
)

// BenchmarkFileLogToFileSink streams 100-byte records from a filelog
// Source to the transactional file sink (one data fsync and one state
// commit per batch of 1000), with the default checkpoint policy, and
// reports records/s.
func BenchmarkFileLogToFileSink(b *testing.B) { benchFileLogToFileSink(b, false) }

// BenchmarkFileLogToConditionalFileSink is BenchmarkFileLogToFileSink
// through Sink.Conditional: every batch is an ApplyAt, whose position
// compare under the lock should cost nothing next to the fsyncs.
func BenchmarkFileLogToConditionalFileSink(b *testing.B) { benchFileLogToFileSink(b, true) }

func benchFileLogToFileSink(b *testing.B, conditional bool) {
	const perRun = 200_000
	dir := b.TempDir()
	w, err := filelog.OpenWriter(filepath.Join(dir, "log"), filelog.WriterOptions{})
	if err != nil {
		b.Fatal(err)
	}
	rec := bytes.Repeat([]byte{'x'}, 100)
	batch := make([][]byte, 1000)
	for i := range batch {
		batch[i] = rec
	}
	for i := 0; i < perRun/len(batch); i++ {
		if _, err := w.Append(batch...); err != nil {
			b.Fatal(err)
		}
	}
	end := w.Position()
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	var total time.Duration
	for i := 0; b.Loop(); i++ {
		sink, err := Open(filepath.Join(dir, fmt.Sprintf("out%d.log", i)))
		if err != nil {
			b.Fatal(err)
		}
		var target replicate.Sink = sink
		if conditional {
			target = sink.Conditional()
		}
		s := &replicate.Stream{
			Source: &filelog.Source{Dir: filepath.Join(dir, "log")},
			Sink:   target, Store: memstore.New(), Key: "bench", HeartbeatInterval: -1,
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- s.Run(ctx, 1) }()
		for {
			if p, err := sink.Position(ctx); err != nil {
				b.Fatal(err)
			} else if bytes.Equal(p, end) {
				break
			}
			time.Sleep(time.Millisecond) // polling the sink's committed position
		}
		total += time.Since(start)
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		sink.Close()
	}
	b.ReportMetric(float64(perRun)*float64(b.N)/total.Seconds(), "records/s")
}
