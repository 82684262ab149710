package filesink

import (
	"context"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/replicate"
)

// Conditional returns s as a replicate.ConditionalSink: the same sink and
// files, plus ApplyAt. A Stream given the result applies a batch only at
// the position it expects, which closes the window in which a late batch
// of an earlier Run under the same token is applied twice (see
// replicate.DurableSink).
//
// Sink itself has no ApplyAt so that a type embedding it to change what
// Apply does keeps being called: the Stream prefers ApplyAt, and a
// promoted one would bypass the embedder's Apply.
func (s *Sink) Conditional() *ConditionalSink { return &ConditionalSink{Sink: s} }

// ConditionalSink is a Sink with a conditional apply
// (replicate.ConditionalSink). Make one with Sink.Conditional; its methods
// other than ApplyAt are the Sink's.
type ConditionalSink struct {
	*Sink
}

var (
	_ replicate.ConditionalSink = (*ConditionalSink)(nil)
	_ replicate.HeartbeatSink   = (*ConditionalSink)(nil)
)

// ApplyAt is Apply if the committed position equals from (nil: nothing
// committed yet), decided under the file lock together with the commit.
// Otherwise it writes nothing and returns an error matching
// replicate.ErrPositionMismatch that names the file and both positions; a
// stale t fails with fence.ErrStale first.
func (c *ConditionalSink) ApplyAt(ctx context.Context, t fence.Token, from replicate.Position, batch []replicate.Record) error {
	return c.apply(ctx, t, batch, true, from)
}
