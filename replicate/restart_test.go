package replicate_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/memrepl"
	"github.com/hakit/hakit/storage/memstore"
)

// lateSink is a DurableSink in front of a networked target. Its holdNth-th
// non-empty batch times out at the client (Apply returns a deadline error)
// while the target still has it: the batch lands later, just after the
// next Position read — after the next Run of the same term read where the
// sink stands, the window the simulation of package ha/hatest found.
type lateSink struct {
	inner   *memrepl.DurableSink
	holdNth int

	mu     sync.Mutex
	n      int          // non-empty batches seen
	held   func() error // delivers the held batch, once
	landed chan error   // the held batch's result
}

func newLateSink(holdNth int) *lateSink {
	return &lateSink{inner: &memrepl.DurableSink{}, holdNth: holdNth, landed: make(chan error, 1)}
}

// send applies batch with apply, or holds it if it is the holdNth one.
func (s *lateSink) send(ctx context.Context, batch []replicate.Record, apply func(context.Context, []replicate.Record) error) error {
	if len(batch) == 0 {
		return apply(ctx, batch)
	}
	s.mu.Lock()
	s.n++
	hold := s.n == s.holdNth
	if hold {
		b := slices.Clone(batch) // the Stream reuses its batch slice
		s.held = func() error { return apply(context.Background(), b) }
	}
	s.mu.Unlock()
	if hold {
		return fmt.Errorf("lateSink: apply of %d records at %x: %w", len(batch), batch[0].Pos, context.DeadlineExceeded)
	}
	return apply(ctx, batch)
}

func (s *lateSink) Apply(ctx context.Context, t fence.Token, batch []replicate.Record) error {
	return s.send(ctx, batch, func(ctx context.Context, b []replicate.Record) error { return s.inner.Apply(ctx, t, b) })
}

// Position reads the position, then lets the held batch land.
func (s *lateSink) Position(ctx context.Context) (replicate.Position, error) {
	p, err := s.inner.Position(ctx)
	s.mu.Lock()
	held := s.held
	s.held = nil
	s.mu.Unlock()
	if held != nil {
		s.landed <- held()
	}
	return p, err
}

// lateConditionalSink is the same target with a conditional apply; the
// held batch goes out with the position its Run expected.
type lateConditionalSink struct {
	*lateSink
	cond *memrepl.ConditionalSink
}

func (s *lateConditionalSink) ApplyAt(ctx context.Context, t fence.Token, from replicate.Position, batch []replicate.Record) error {
	return s.send(ctx, batch, func(ctx context.Context, b []replicate.Record) error { return s.cond.ApplyAt(ctx, t, from, b) })
}

// A Run fails because a batch timed out at the client; the work is run
// again under the same token (ha.Node does so within a term), and the
// timed-out batch lands after the new Run read the sink's position.
// Tokens cannot tell the two Runs apart: a plain DurableSink applies the
// batch's records twice, a ConditionalSink refuses the new Run's
// overlapping batch, and the Run after that finishes with the target
// equal to the source.
func TestRestartSameTokenLateBatch(t *testing.T) {
	const tok = fence.Token(5)
	// Runs that should fail on their own are bounded, so that a
	// regression fails the test instead of hanging it.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, conditional := range []bool{false, true} {
		t.Run(fmt.Sprintf("conditional=%v", conditional), func(t *testing.T) {
			src := &memrepl.Source{}
			fill(src, 0, 20)
			ls := newLateSink(2)
			var sink replicate.Sink = ls
			if conditional {
				sink = &lateConditionalSink{lateSink: ls, cond: ls.inner.Conditional()}
			}
			s := &replicate.Stream{Source: src, Sink: sink, Store: memstore.New(), Key: "cp",
				MaxRecords: 5, HeartbeatInterval: -1, CheckpointRecords: 1}

			// Run 1 applies records 1-5; its batch 6-10 times out.
			if err := s.Run(ctx, tok); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("run 1 = %v, want the timed-out apply", err)
			}
			if n := ls.inner.Len(); n != 5 {
				t.Fatalf("sink has %d records after run 1, want 5", n)
			}

			if !conditional {
				// Run 2 reads position 5, the late batch lands, and Run
				// 2 applies 6-10 again: the hole a ConditionalSink closes.
				stop := runStream(t, s, tok)
				waitFor(t, func() bool { return ls.inner.Len() >= 25 })
				if err := stop(); err != nil {
					t.Fatal(err)
				}
				if err := <-ls.landed; err != nil {
					t.Fatalf("the late batch: %v", err)
				}
				if got := ls.inner.Len(); got != 25 {
					t.Fatalf("plain DurableSink has %d records, want 25 (records 6-10 twice)", got)
				}
				return
			}

			// Run 2 reads position 5, the late batch lands (at 5, where
			// run 1 expected it), and Run 2's batch 6-10 is refused.
			err := s.Run(ctx, tok)
			var mm *replicate.PositionMismatchError
			if !errors.Is(err, replicate.ErrPositionMismatch) || !errors.As(err, &mm) {
				t.Fatalf("run 2 = %v, want ErrPositionMismatch", err)
			}
			if err := <-ls.landed; err != nil {
				t.Fatalf("the late batch: %v", err)
			}
			if want, have := memrepl.Pos(5), memrepl.Pos(10); !replicate.SamePosition(mm.Want, want) || !replicate.SamePosition(mm.Have, have) {
				t.Fatalf("mismatch names %x and %x, want %x and %x", mm.Want, mm.Have, want, have)
			}
			// Run 3, as the Node's restart, reads position 10 and
			// finishes.
			stop := runStream(t, s, tok)
			waitFor(t, func() bool { return ls.inner.Len() >= 20 })
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			checkExact(t, src, ls.inner.Records())
			if cp := loadCP(t, s.Store, "cp"); !replicate.SamePosition(cp.Pos, memrepl.Pos(20)) {
				t.Fatalf("checkpoint at %x, want %x", cp.Pos, memrepl.Pos(20))
			}
		})
	}
}
