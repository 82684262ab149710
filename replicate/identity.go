package replicate

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/hakit/hakit/fence"
)

// A checkpoint and a sink belong together: the checkpoint says how far the
// stream got in delivering to that one target. Reuse a checkpoint key (or
// an etcd prefix) for another target, or point two streams at one target,
// and a Stream that trusted the checkpoint would skip records the target
// never received. So each side records the other:
//
//   - the checkpoint records the ID of the sink it was written for
//     (Checkpoint.Sink), and
//   - the sink records the key of the stream it belongs to
//     (SinkIdentity.Stream).
//
// A Run checks both before it applies anything and refuses a mismatch with
// an error matching ErrIdentity. A sink that is not an IdentifiedSink (a
// plain Sink, or a wrapper that hides its sink's identity) cannot be
// checked: the Run logs a warning if the checkpoint names a sink, and
// keeps that name in the checkpoints it writes. The adapters provide the
// sink's side: memrepl's DurableSink, filesink, sqlsink and pgsink are
// IdentifiedSinks. A
// target restored from a backup keeps its ID (it is part of the target's
// state), so it is recognised, found behind the checkpoint, and replayed
// to from its own position; a new target has a new ID and is refused until
// an operator points the stream at it on purpose with RebuildCheckpoint.

var (
	// ErrIdentity is matched by the error a Run stops with, before it
	// applies anything, when the checkpoint and the sink do not belong
	// together: the checkpoint was written for another sink (the key or
	// prefix is used by another target, or the target was replaced), or
	// the sink belongs to another stream. The error names both sides and
	// what to do.
	ErrIdentity = errors.New("replicate: checkpoint and sink belong to different streams")
	// ErrGap is matched by the error a Run stops with, before it applies
	// anything, when the sink stands behind the checkpoint (a target
	// restored from an old backup, say) and the Source cannot be read from
	// the sink's position any more (it was trimmed): the records in
	// between are in neither, and resuming from the checkpoint would leave
	// a silent hole in the target. The error names the key, both positions
	// and what to do.
	ErrGap = errors.New("replicate: records missing between the sink and the checkpoint")
)

// SinkIdentity is what an IdentifiedSink records about itself.
type SinkIdentity struct {
	// ID names the target. It is made, at random, when the target is
	// created, and stored with the target's own state, so that a copy of
	// the target (a restored backup) has the same ID and a new target a
	// new one. "" means the target has none yet (one created before IDs
	// existed, or not created yet); Bind gives it one.
	ID string
	// Stream is the checkpoint key of the stream the target belongs to,
	// "" until a Stream binds it.
	Stream string
}

// IdentifiedSink is a DurableSink that has an identity of its own and
// records the stream it belongs to, so that a Stream can tell that a
// checkpoint and a sink belong together (see ErrIdentity).
type IdentifiedSink interface {
	DurableSink
	// Identity returns the target's identity as stored now.
	Identity(ctx context.Context) (SinkIdentity, error)
	// Bind binds the target to the stream whose checkpoint key is to, if
	// it is bound to from ("" for a target bound to no stream) or to to
	// already, and gives it an ID if it has none; otherwise it changes
	// nothing and returns an error matching ErrIdentity that names the
	// stream it is bound to. Bind is fenced and atomic like Apply: a
	// stale t fails with fence.ErrStale, and t is admitted as by an empty
	// Apply. It returns the identity as stored afterwards.
	//
	// A Stream calls Bind(ctx, t, "", key) before it reads the sink's
	// position. An operator moves a target from one stream to another on
	// purpose with Bind(ctx, t, oldKey, newKey).
	Bind(ctx context.Context, t fence.Token, from, to string) (SinkIdentity, error)
}

// NewSinkID returns a new random sink ID (128 bits, in hexadecimal), for
// IdentifiedSink implementations.
func NewSinkID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// BoundElsewhere returns the error an IdentifiedSink's Bind gives when the
// target with ID sink is bound to stream bound and was to be bound to
// stream to: it matches ErrIdentity and says how to move it on purpose.
func BoundElsewhere(sink, bound, to string) error {
	return fmt.Errorf("%w: sink %s belongs to stream %q, not %q; if it is to move to %q on purpose, Bind it from %q",
		ErrIdentity, sinkName(sink), bound, to, to, bound)
}

// sinkName shows a sink ID in messages.
func sinkName(id string) string {
	if id == "" {
		return "(with no ID yet)"
	}
	return id
}
