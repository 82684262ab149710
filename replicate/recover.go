package replicate

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/storage"
)

// RebuildCheckpoint writes the checkpoint under key from a DurableSink's
// own position, with token t. It serves two purposes.
//
// Restoring a lost checkpoint store: the checkpoint is absent (or older
// than the sink), and the next Run resumes from the sink's position
// instead of at the beginning. A checkpoint of the same sink at or after
// the sink's position is left alone and returned: the checkpoint of a
// sink never moves backwards.
//
// Pointing a stream at a new target on purpose: a Run refuses a checkpoint
// written for another sink (ErrIdentity), since that is also what a key
// or prefix reused by mistake looks like. Once an operator has decided
// that the stream is to deliver to this sink (a replacement target, empty
// or loaded from a copy), RebuildCheckpoint with it replaces the
// checkpoint by one at this sink's position, naming this sink, even if
// that is before the old one, and binds the sink to the stream. The next
// Run then delivers everything after the sink's position, or fails with
// ErrGap if the Source no longer has it. An IdentifiedSink bound to
// another stream is refused (move it first with its Bind).
//
// A stored checkpoint that cannot be decoded is an error naming the key
// (delete it deliberately first if it is to be replaced). The rebuilt
// checkpoint has no State, so it suits Sources that can resume from a
// position alone, as every Source in this module can. cmp orders
// positions (a Source's Comparer.Compare, or CompareBytes); now stamps the
// checkpoint's Time. The write is a CompareAndSwap under t, so a stale t
// fails with an error matching fence.ErrStale; so does the sink's Bind.
func RebuildCheckpoint(ctx context.Context, store storage.Store, key string, t fence.Token, sink DurableSink, cmp func(a, b Position) int, now time.Time) (Checkpoint, error) {
	if err := storage.ValidateKey(key); err != nil {
		return Checkpoint{}, fmt.Errorf("%w: rebuild checkpoint: Key: %v", ErrConfig, err)
	}
	if cmp == nil {
		return Checkpoint{}, fmt.Errorf("%w: rebuild checkpoint %q: Compare: must not be nil", ErrConfig, key)
	}
	sinkID := ""
	if is, ok := sink.(IdentifiedSink); ok {
		id, err := is.Bind(ctx, t, "", key)
		if err != nil {
			return Checkpoint{}, fmt.Errorf("replicate: rebuild checkpoint %q: bind the sink: %w", key, err)
		}
		sinkID = id.ID
	}
	pos, err := sink.Position(ctx)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("replicate: rebuild checkpoint %q: read sink position: %w", key, err)
	}
	for {
		cur, ver, err := LoadCheckpoint(ctx, store, key)
		if err != nil {
			return Checkpoint{}, err
		}
		sameSink := cur.Sink == "" || cur.Sink == sinkID
		if ver != 0 && sameSink && cmp(cur.Pos, pos) >= 0 {
			return cur, nil
		}
		cp := Checkpoint{Pos: pos, Token: t, Time: now, Sink: sinkID}
		_, err = store.CompareAndSwap(ctx, t, key, ver, EncodeCheckpoint(cp))
		if err == nil {
			return cp, nil
		}
		if !errors.Is(err, storage.ErrConflict) {
			return Checkpoint{}, fmt.Errorf("replicate: rebuild checkpoint %q at %x under token %d: %w", key, pos, t, err)
		}
		// A concurrent writer got there first; look again.
	}
}
