// Package replicate is hakit's resumable, fenced checkpoint stream: it moves
// records from a Source to a Sink and keeps a checkpoint of how far it got
// in a fenced storage.Store, so that the next active member resumes exactly
// where the last one stopped and a deposed member can no longer advance it.
//
// A Stream is run by the active member with its term's token (ha.Node's
// work function does this); when the term ends, the context is cancelled
// and Run commits a final checkpoint and returns. With a ConditionalSink —
// one that commits its own position with the records, and applies a batch
// only at the position the Stream expects — delivery is exactly once
// across failovers and restarts. A DurableSink without that condition is
// exactly once too, except that a Run restarted under the same token (as
// ha.Node restarts failed work) can apply a second time a batch that its
// failed predecessor still had in flight and that landed after the new Run
// read the sink's position. With any other Sink delivery is at least once,
// and the span replayed after a crash is bounded by the checkpoint policy.
//
// Records are never skipped. A DurableSink that stands behind the
// checkpoint (a target restored from a backup) gets the records in between
// again, from its own position; if the Source cannot give them any more,
// the Stream refuses to start with ErrGap. A checkpoint records the ID of
// the sink it was written for and an IdentifiedSink the stream it belongs
// to, so a checkpoint key reused for another target, or two streams
// pointed at one target, are refused with ErrIdentity.
//
// Checkpoints are stored in a versioned, checksummed encoding
// (EncodeCheckpoint); a damaged or unknown one stops the Stream with an
// error naming the key and is never read as "start from the beginning".
// RebuildCheckpoint restores a lost checkpoint from a DurableSink, and
// points a stream at a new target on purpose.
//
// Under ha.Node, run the Stream as the work with RunTerm: it runs under
// the term's token and binds the checkpoint store to the term when the
// store can (lease.TermBinder: etcdstore).
//
// Adapters live in subpackages, so that a program compiles only what it
// uses: memrepl (in memory, for tests), filelog (a segment-file log Source
// and its Writer), filesink (a transactional file DurableSink), sqlsink
// (a database/sql DurableSink for PostgreSQL), pgcdc (PostgreSQL change
// data capture through a logical replication slot) and pgsink (its row
// changes applied to a PostgreSQL target, a ConditionalSink); the sinks
// are IdentifiedSinks.
package replicate

import (
	"context"
	"encoding/hex"
	"log/slog"
	"time"

	"github.com/hakit/hakit/fence"
)

// Position is a place in a Source's change stream. Its bytes are defined by
// the Source and opaque to hakit; a nil Position means "the beginning".
// Errors and logs show positions in hexadecimal.
type Position []byte

// LogValue shows p in hexadecimal in structured logs, as errors show it
// ("nil" for the beginning), rather than as escaped raw bytes.
func (p Position) LogValue() slog.Value {
	if len(p) == 0 {
		return slog.StringValue("nil")
	}
	return slog.StringValue(hex.EncodeToString(p))
}

// Record is one change read from a Source.
type Record struct {
	Pos  Position // the position just after this record: resuming here reads the next one
	Data []byte
}

// Checkpoint is a safe restart point of a stream.
type Checkpoint struct {
	Pos   Position    // where to resume reading
	State []byte      // opaque Source state needed to resume there (open transactions, ...)
	Token fence.Token // the token of the term that wrote the checkpoint
	Time  time.Time   // when it was taken
	// Sink is the ID of the sink the checkpoint was written for
	// (SinkIdentity.ID), "" if the sink has none; a Run refuses a sink
	// with another ID (ErrIdentity). The Stream fills it in.
	Sink string
}

// Source is a change stream that can be opened at a checkpoint.
type Source interface {
	// Open returns a Cursor that yields the records after from.Pos, using
	// from.State to restore whatever the Source needs. The zero Checkpoint
	// opens at the beginning.
	Open(ctx context.Context, from Checkpoint) (Cursor, error)
}

// Cursor reads records from an open Source.
type Cursor interface {
	// Next returns up to max records, blocking until at least one is
	// available or ctx ends.
	Next(ctx context.Context, max int) ([]Record, error)
	// Checkpoint returns a safe restart point covering every record Next
	// has returned so far (Pos and State; the Stream fills in Token and
	// Time).
	Checkpoint() Checkpoint
	// Close releases the cursor.
	Close() error
}

// Sink is the target of a stream. Apply writes batch with token t and
// returns only once the batch is durable in the target. A Sink that can
// fence its writes rejects t smaller than one it applied before, with an
// error matching fence.ErrStale.
type Sink interface {
	Apply(ctx context.Context, t fence.Token, batch []Record) error
}

// DurableSink is a Sink that stores its own position in the same atomic
// step as the records it applies, which is what makes exactly-once
// delivery across failovers possible. Apply with an empty batch writes no
// records and leaves the position alone, but a fencing DurableSink admits
// t all the same: a Stream does that before it reads Position, so that no
// older term's batch can land after the read and be applied twice.
//
// What the token cannot do is tell two Runs of one term apart. When a Run
// fails (an Apply timed out, say) and the same member runs the work again
// under the same token, as ha.Node does, a batch of the failed Run that is
// still in flight to a networked target can land after the new Run read
// Position, and Apply appends it wherever the sink stands, so those records
// are applied twice. A DurableSink that is also a ConditionalSink closes
// that window; one that is not stays exposed to it.
type DurableSink interface {
	Sink
	// Position returns the position after the last applied record, or nil
	// if nothing was applied.
	Position(ctx context.Context) (Position, error)
}

// ConditionalSink is a DurableSink that can make an Apply conditional on
// the position it stands at. A Stream whose Sink implements it applies
// every batch with ApplyAt, naming the position it believes the sink is
// at: the one it read when it opened, then the one after each batch it
// applied. A batch that an earlier Run sent under the same token and that
// lands late therefore finds the sink somewhere else and is refused, and
// so is the next batch of the Run that did not expect the late one.
//
// A wrapper that embeds a ConditionalSink and changes what Apply does
// must give ApplyAt the same treatment: the Stream calls ApplyAt instead
// of Apply, so a promoted ApplyAt would bypass the wrapper.
type ConditionalSink interface {
	DurableSink
	// ApplyAt is Apply — fenced by t, and storing the batch, the position
	// after its last record and t in one atomic step — if and only if the
	// sink's stored position equals from at that step (nil from: nothing
	// was applied yet; nil and empty positions are equal). Otherwise it
	// applies nothing, leaves position and token alone, and returns an
	// error matching ErrPositionMismatch that names both positions
	// (PositionMismatch builds one). A stale t fails with fence.ErrStale
	// first, whatever the position. An empty batch applies nothing but
	// is checked and admits t the same way.
	ApplyAt(ctx context.Context, t fence.Token, from Position, batch []Record) error
}
