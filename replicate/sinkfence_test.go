package replicate_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/memrepl"
	"github.com/hakit/hakit/storage/memstore"
)

// lateWriterSink is a DurableSink whose Position, just after reading the
// position, lets a deposed member (token 1) apply one more batch: the
// batch a paused process had in flight when it lost its lease, landing
// between a new Run's read of the sink's position and its first Apply.
type lateWriterSink struct {
	*memrepl.DurableSink
	late    []replicate.Record
	lateErr error
}

func (s *lateWriterSink) Position(ctx context.Context) (replicate.Position, error) {
	p, err := s.DurableSink.Position(ctx)
	if s.late != nil {
		s.lateErr = s.DurableSink.Apply(ctx, 1, s.late)
		s.late = nil
	}
	return p, err
}

// With a DurableSink, a batch that a deposed member applies after the new
// Run read the sink's position must not be applied twice: the Run has its
// token admitted by the sink before it reads the position, so the late
// batch is refused.
func TestDurableSinkFencedBeforePositionRead(t *testing.T) {
	ctx := context.Background()
	src := &memrepl.Source{}
	fill(src, 0, 20)
	inner := &memrepl.DurableSink{}
	if err := inner.Apply(ctx, 1, src.Records()[:10]); err != nil {
		t.Fatal(err)
	}
	sink := &lateWriterSink{DurableSink: inner, late: src.Records()[10:13]}
	s := &replicate.Stream{Source: src, Sink: sink, Store: memstore.New(), Key: "cp", HeartbeatInterval: -1}
	stop := runStream(t, s, fence.Token(2))
	waitFor(t, func() bool {
		recs := inner.Records()
		return len(recs) > 0 && bytes.Equal(recs[len(recs)-1].Pos, memrepl.Pos(20))
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkExact(t, src, inner.Records())
	if !errors.Is(sink.lateErr, fence.ErrStale) {
		t.Fatalf("the deposed member's late Apply = %v, want fence.ErrStale", sink.lateErr)
	}
}
