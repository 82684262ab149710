package replicate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hakit/hakit/fence"
)

// Comparer is implemented by a Source that can order its positions. The
// Stream needs an order to resume from the newer of its checkpoint and a
// DurableSink's position and to refuse to move a checkpoint backwards; it
// uses Stream.Compare if set, and otherwise the Source's Comparer.
type Comparer interface {
	// Compare returns a negative number if a is before b in the stream,
	// zero if they are the same place and a positive number if a is after
	// b. A nil Position is the beginning and is before every record's
	// position.
	Compare(a, b Position) int
}

// CompareBytes orders positions by their bytes (bytes.Compare). It is the
// right Compare for every Source whose positions are fixed-width big-endian
// counters, as the Sources in this module's subpackages are. A nil or empty
// Position sorts first.
func CompareBytes(a, b Position) int { return bytes.Compare(a, b) }

// Heartbeat is the marker a Stream sends through its pipeline when the
// Source has been idle for Stream.HeartbeatInterval. It reaches the Sink in
// order with the batches (after every batch read before it), so the Sink
// can store Time next to Pos — the "heartbeat table" of a replication
// target — and anyone reading the target can compute end-to-end staleness
// as now minus the stored Time, even when no data flows.
type Heartbeat struct {
	Pos  Position  // the position of the last record read before the heartbeat (nil: none yet)
	Time time.Time // when the Stream created the heartbeat, by its clock
}

// HeartbeatSink is implemented by a Sink that records heartbeats. A Sink
// that does not implement it is sent none; the Stream still counts them and
// measures lag. ApplyHeartbeat is fenced exactly like Sink.Apply.
type HeartbeatSink interface {
	Sink
	ApplyHeartbeat(ctx context.Context, t fence.Token, hb Heartbeat) error
}

// ErrPositionMismatch is matched by the error a ConditionalSink returns
// when the position it stands at is not the one ApplyAt was given. A Run
// that gets it stops with it, having applied nothing of the refused batch;
// the Node (or whoever runs the Stream) runs it again, and the new Run
// reads the sink's position afresh and carries on from there.
var ErrPositionMismatch = errors.New("replicate: sink is not at the expected position")

// PositionMismatchError reports a conditional apply refused because the
// sink stood at Have rather than Want. It matches ErrPositionMismatch
// under errors.Is.
type PositionMismatchError struct {
	Want Position // the position ApplyAt was given
	Have Position // the sink's stored position (nil: nothing applied)
}

// Error names both positions, in hexadecimal.
func (e *PositionMismatchError) Error() string {
	return fmt.Sprintf("%v: sink at %s, apply expected %s", ErrPositionMismatch, hexPos(e.Have), hexPos(e.Want))
}

// Is reports whether target is ErrPositionMismatch.
func (e *PositionMismatchError) Is(target error) bool { return target == ErrPositionMismatch }

// PositionMismatch returns the error for a conditional apply that expected
// the sink at want and found it at have. It is for ConditionalSink
// implementations, so that they all report it the same way.
func PositionMismatch(want, have Position) error {
	return &PositionMismatchError{Want: bytes.Clone(want), Have: bytes.Clone(have)}
}

// SamePosition reports whether a and b are the same stored position, the
// test a ConditionalSink applies: their bytes are equal, and nil equals
// empty.
func SamePosition(a, b Position) bool { return bytes.Equal(a, b) }

func hexPos(p Position) string {
	if len(p) == 0 {
		return "nil (nothing applied)"
	}
	return fmt.Sprintf("%x", []byte(p))
}

// Acknowledger is implemented by a Cursor whose Source must learn which of
// its records are durable, so that it can release them: a database keeps
// its change log until the reader confirms it (PostgreSQL's replication
// slot), and must never be told more than what a successor could resume
// from.
//
// A Stream calls Acknowledge with a position once every record up to and
// including it is durable: after each batch a DurableSink has applied (the
// sink stores its position with the records) and after each checkpoint of
// progress it committed to the Store. The checkpoint a Run claims at its
// start is not acknowledged: when the sink stands behind it (a target
// restored from a backup), the records in between are not in the target
// until the Run has delivered them again, and the Source must keep them
// for that. Positions come in non-decreasing order under the Stream's
// Compare. Acknowledge is called from the Stream's applying goroutine,
// concurrently with Next; it must not block. The position a Cursor was
// opened at is durable too, and is not acknowledged again.
type Acknowledger interface {
	Acknowledge(p Position)
}

// AtomicChunker is implemented by a Cursor whose every Next result must
// reach the Sink in one batch: a Cursor that returns whole source
// transactions, so that a transactional Sink applies each of them whole
// or not at all. When AtomicChunks reports true, a Stream never splits
// what one Next returned across batches: it applies the batch it holds
// first if the chunk would not fit, and a chunk larger than MaxRecords or
// MaxBytes becomes a batch of its own. The Stream may still put several
// chunks into one batch. Such a Cursor bounds the size of what it returns.
type AtomicChunker interface {
	AtomicChunks() bool
}
