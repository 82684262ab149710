package replicate

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/storage"
)

// RebuildCheckpoint is the disaster-recovery step for a lost checkpoint
// store: it reads the DurableSink's own position and commits it as the
// checkpoint under key with token t, so that the next Run resumes there
// instead of at the beginning.
//
// It never moves a checkpoint backwards: if the stored checkpoint is at or
// after the Sink's position it is left alone and returned. A stored
// checkpoint that cannot be decoded is an error naming the key (delete it
// deliberately first if it is to be replaced). The rebuilt checkpoint has
// no State, so it suits Sources that can resume from a position alone, as
// every Source in this module can. cmp orders positions (a Source's
// Comparer.Compare, or CompareBytes); now stamps the checkpoint's Time.
// The write is a CompareAndSwap under t, so a stale t fails with an error
// matching fence.ErrStale.
func RebuildCheckpoint(ctx context.Context, store storage.Store, key string, t fence.Token, sink DurableSink, cmp func(a, b Position) int, now time.Time) (Checkpoint, error) {
	if err := storage.ValidateKey(key); err != nil {
		return Checkpoint{}, fmt.Errorf("replicate: rebuild checkpoint: %w", err)
	}
	if cmp == nil {
		return Checkpoint{}, fmt.Errorf("%w: rebuild checkpoint %q: nil compare function", ErrConfig, key)
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
		if ver != 0 && cmp(cur.Pos, pos) >= 0 {
			return cur, nil
		}
		cp := Checkpoint{Pos: pos, Token: t, Time: now}
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
