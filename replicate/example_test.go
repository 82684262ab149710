package replicate_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/memrepl"
	"github.com/hakit/hakit/storage/memstore"
)

// A Stream from a memory source to a memory sink, checkpointed in a fenced
// memory store. A second term (a larger token) resumes where the first
// stopped.
func ExampleStream() {
	ctx := context.Background()
	src := &memrepl.Source{}
	sink := &memrepl.DurableSink{}
	store := memstore.New() // storage.Fenced over an in-memory backend

	stream := &replicate.Stream{Source: src, Sink: sink, Store: store, Key: "orders/checkpoint"}
	runUntil := func(token uint64, n int) {
		ctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- stream.Run(ctx, fence.Token(token)) }()
		_ = sink.WaitLen(ctx, n)
		cancel() // a clean stop: final checkpoint, then Run returns
		if err := <-done; err != nil {
			fmt.Println("run:", err)
		}
	}

	src.Append([]byte("a"), []byte("b"), []byte("c"))
	runUntil(1, 3)
	src.Append([]byte("d"))
	runUntil(2, 4)

	cp, _, _ := replicate.LoadCheckpoint(ctx, store, "orders/checkpoint")
	n, _ := memrepl.DecodePos(cp.Pos)
	fmt.Printf("checkpoint after %d records, token %d\n", n, cp.Token)
	var data []string
	for _, r := range sink.Records() {
		data = append(data, string(r.Data))
	}
	fmt.Println(strings.Join(data, " "))
	fmt.Println("records applied:", stream.Stats().Records)
	// Output:
	// checkpoint after 4 records, token 2
	// a b c d
	// records applied: 4
}

// After losing the checkpoint store, rebuild the checkpoint from the
// durable sink's own position so the next term does not start over.
func ExampleRebuildCheckpoint() {
	ctx := context.Background()
	src := &memrepl.Source{}
	src.Append([]byte("x"), []byte("y"))
	sink := &memrepl.DurableSink{}
	_ = sink.Apply(ctx, 1, src.Records()) // what the lost store's stream had applied

	fresh := memstore.New()
	cp, err := replicate.RebuildCheckpoint(ctx, fresh, "orders/checkpoint", 2, sink, src.Compare, time.Unix(0, 0))
	if err != nil {
		fmt.Println(err)
		return
	}
	n, _ := memrepl.DecodePos(cp.Pos)
	fmt.Println("resume after record", n)
	// Output: resume after record 2
}

// Checkpoints are stored in a versioned, checksummed encoding; damage is an
// error, never "start from the beginning".
func ExampleDecodeCheckpoint() {
	b := replicate.EncodeCheckpoint(replicate.Checkpoint{Pos: memrepl.Pos(7), Token: 3})
	b[len(b)-1] ^= 1
	_, err := replicate.DecodeCheckpoint(b)
	fmt.Println(err != nil)
	// Output: true
}

// A ConditionalSink applies a batch only where the caller expects the sink
// to stand. Two Runs of one term cannot be told apart by their token, but a
// batch of the first that lands after the second read the position is
// caught by the position: the second Run's own batch is refused instead of
// applying those records twice, and the work, run again, resumes after it.
func ExampleConditionalSink() {
	ctx := context.Background()
	src := &memrepl.Source{}
	src.Append([]byte("a"), []byte("b"), []byte("c"), []byte("d"))
	recs := src.Records()
	sink := (&memrepl.DurableSink{}).Conditional()
	const term = fence.Token(7)

	_ = sink.ApplyAt(ctx, term, nil, recs[:1])     // run 1 applies "a"
	read, _ := sink.Position(ctx)                  // run 2 reads: after "a"
	_ = sink.ApplyAt(ctx, term, read, recs[1:3])   // run 1's timed-out "b c" lands late
	err := sink.ApplyAt(ctx, term, read, recs[1:]) // run 2 applies "b c d"
	fmt.Println(errors.Is(err, replicate.ErrPositionMismatch))

	read, _ = sink.Position(ctx) // run 3, the restart, reads again
	_ = sink.ApplyAt(ctx, term, read, recs[3:])
	var data []string
	for _, r := range sink.Records() {
		data = append(data, string(r.Data))
	}
	fmt.Println(strings.Join(data, " "))
	// Output:
	// true
	// a b c d
}

// A checkpoint key used by one target is refused for another, until an
// operator points the stream at the new target on purpose; then the new
// target gets every record, from the beginning.
func Example_repoint() {
	ctx := context.Background()
	src := &memrepl.Source{}
	src.Append([]byte("x"), []byte("y"), []byte("z"))
	store := memstore.New()
	quiet := slog.New(slog.DiscardHandler)

	old := &memrepl.DurableSink{}
	s := &replicate.Stream{Source: src, Sink: old, Store: store, Key: "orders/checkpoint", Logger: quiet}
	run, stop := context.WithCancel(ctx)
	go func() { _ = old.WaitLen(ctx, 3); stop() }()
	_ = s.Run(run, 1)

	replacement := &memrepl.DurableSink{}
	s2 := &replicate.Stream{Source: src, Sink: replacement, Store: store, Key: "orders/checkpoint", Logger: quiet}
	err := s2.Run(ctx, 2)
	fmt.Println("refused:", errors.Is(err, replicate.ErrIdentity))

	if _, err := replicate.RebuildCheckpoint(ctx, store, "orders/checkpoint", 3, replacement, replicate.CompareBytes, time.Unix(0, 0)); err != nil {
		fmt.Println(err)
		return
	}
	run, stop = context.WithCancel(ctx)
	go func() { _ = replacement.WaitLen(ctx, 3); stop() }()
	_ = s2.Run(run, 4)
	fmt.Println("the new target has", replacement.Len(), "records")
	// Output:
	// refused: true
	// the new target has 3 records
}
