package replicate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/lease/clock"
	"github.com/hakit/hakit/storage"
)

// This file is the applier half of a Run: batching, Sink.Apply, the
// checkpoint policy and commits, heartbeats, and the stop sequence. It
// runs on Run's goroutine only.

// loop is the applier: it batches, applies, checkpoints and beats until
// ctx ends or something fails.
func (r *run) loop(ctx context.Context) error {
	cfg := r.cfg
	waitT := newIdleTimer(cfg.clock)
	defer waitT.stop()
	cpT := newIdleTimer(cfg.clock)
	defer cpT.stop()
	hbT := newIdleTimer(cfg.clock)
	defer hbT.stop()
	if cfg.checkpointInterval > 0 {
		cpT.arm(cfg.checkpointInterval)
	}
	if cfg.heartbeat > 0 {
		hbT.arm(cfg.heartbeat)
	}

	for {
		select {
		case c := <-r.chunks:
			if err := r.take(ctx, c); err != nil {
				return r.fail(ctx, err)
			}
			// Take whatever else is ready without blocking, then apply
			// unless a partial batch may still wait for more.
		drain:
			for len(r.batch) < cfg.maxRecords && r.batchBytes < cfg.maxBytes {
				select {
				case c := <-r.chunks:
					if err := r.take(ctx, c); err != nil {
						return r.fail(ctx, err)
					}
				default:
					break drain
				}
			}
			full := len(r.batch) >= cfg.maxRecords || r.batchBytes >= cfg.maxBytes
			if full || cfg.maxWait == 0 || len(r.batch) == 0 {
				waitT.disarm()
				if err := r.flush(ctx); err != nil {
					return r.fail(ctx, err)
				}
			} else if !waitT.armed {
				waitT.arm(cfg.maxWait)
			}
		case <-waitT.c():
			waitT.armed = false
			if err := r.flush(ctx); err != nil {
				return r.fail(ctx, err)
			}
		case <-cpT.c():
			cpT.armed = false
			if err := r.maybeCheckpoint(ctx); err != nil {
				return r.fail(ctx, err)
			}
			// Wake again when the newest checkpoint is one interval old;
			// with nothing pending that is a full interval from now.
			d := cfg.checkpointInterval - cfg.clock.Now().Sub(r.lastCP)
			if d <= 0 {
				d = cfg.checkpointInterval
			}
			cpT.arm(d)
		case <-hbT.c():
			hbT.armed = false
			idle := cfg.clock.Now().Sub(r.lastActivity)
			switch {
			case len(r.batch) > 0:
				// Not idle: a batch is waiting for MaxWait.
				hbT.arm(cfg.heartbeat)
			case idle >= cfg.heartbeat:
				if err := r.beat(ctx); err != nil {
					return r.fail(ctx, err)
				}
				hbT.arm(cfg.heartbeat)
			default:
				hbT.arm(cfg.heartbeat - idle)
			}
		case <-ctx.Done():
			return r.stop(ctx, nil)
		}
	}
}

// take adds a chunk to the batch, applying full batches on the way. A
// chunk's checkpoint is attached only once all its records are in.
func (r *run) take(ctx context.Context, c chunk) error {
	if c.err != nil {
		// Apply what was read before the failure, then stop with it.
		if err := r.flush(ctx); err != nil {
			return err
		}
		return fmt.Errorf("replicate: stream %q: source: %w", r.s.Key, c.err)
	}
	r.lastActivity = c.at
	if len(r.batch) == 0 && !r.batchHasCP {
		r.batchAt = c.at
	}
	if r.atomic {
		return r.takeWhole(ctx, c)
	}
	for _, rec := range c.recs {
		if len(r.batch) > 0 && (len(r.batch) >= r.cfg.maxRecords || r.batchBytes+len(rec.Data) > r.cfg.maxBytes) {
			if err := r.flush(ctx); err != nil {
				return err
			}
			r.batchAt = c.at
		}
		r.batch = append(r.batch, rec)
		r.batchBytes += len(rec.Data)
	}
	r.batchCP, r.batchHasCP = c.cp, true
	r.batchCover += c.covered
	return nil
}

// takeWhole adds a chunk of an AtomicChunker without splitting it: the
// batch held so far is applied first if the chunk would not fit.
func (r *run) takeWhole(ctx context.Context, c chunk) error {
	size := 0
	for _, rec := range c.recs {
		size += len(rec.Data)
	}
	if len(r.batch) > 0 && (len(r.batch)+len(c.recs) > r.cfg.maxRecords || r.batchBytes+size > r.cfg.maxBytes) {
		if err := r.flush(ctx); err != nil {
			return err
		}
		r.batchAt = c.at
	}
	r.batch = append(r.batch, c.recs...)
	r.batchBytes += size
	r.batchCP, r.batchHasCP = c.cp, true
	r.batchCover += c.covered
	return nil
}

// flush applies the batch, records progress and checkpoints if due.
func (r *run) flush(ctx context.Context) error {
	if len(r.batch) == 0 && !r.batchHasCP {
		return nil
	}
	if n := len(r.batch); n > 0 {
		if r.cond != nil {
			if err := r.cond.ApplyAt(ctx, r.token, r.sinkPos, r.batch); err != nil {
				return fmt.Errorf("replicate: stream %q: sink apply of %d records at %x under token %d: %w", r.s.Key, n, r.sinkPos, r.token, err)
			}
			r.sinkPos = r.batch[n-1].Pos
		} else if err := r.cfg.sink.Apply(ctx, r.token, r.batch); err != nil {
			return fmt.Errorf("replicate: stream %q: sink apply of %d records under token %d: %w", r.s.Key, n, r.token, err)
		}
		if r.durable {
			r.acknowledge(r.batch[n-1].Pos)
		}
		now := r.cfg.clock.Now()
		bytes := r.batchBytes
		r.s.stats.update(func(st *Stats) {
			st.Records += uint64(n)
			st.Bytes += uint64(bytes)
			st.Batches++
			st.Lag = now.Sub(r.batchAt)
			st.LastApplied = now
		})
		r.lastActivity = now
	}
	hasCP := r.batchHasCP
	if hasCP {
		r.applied = r.batchCP
		r.sinceCP += r.batchCover
	}
	clear(r.batch) // drop references to Data so the source's memory can go
	r.batch, r.batchBytes, r.batchCP, r.batchHasCP, r.batchCover = r.batch[:0], 0, Checkpoint{}, false, 0
	if !hasCP {
		return nil
	}
	return r.maybeCheckpoint(ctx)
}

// maybeCheckpoint writes the applied checkpoint if the policy says so.
func (r *run) maybeCheckpoint(ctx context.Context) error {
	elapsed := r.cfg.clock.Now().Sub(r.lastCP)
	if !r.cfg.policy().due(r.sinceCP, elapsed) {
		return nil
	}
	return r.checkpoint(ctx)
}

// newer reports whether c moves past the stored checkpoint.
func (r *run) newer(c Checkpoint) bool {
	switch d := r.cfg.compare(c.Pos, r.stored.Pos); {
	case d > 0:
		return true
	case d == 0:
		return !bytes.Equal(c.State, r.stored.State)
	default:
		return false
	}
}

// checkpoint commits r.applied if it is newer than the stored checkpoint.
func (r *run) checkpoint(ctx context.Context) error {
	if !r.newer(r.applied) {
		r.sinceCP = 0
		return nil
	}
	return r.commit(ctx, r.applied, true)
}

// commit writes cp under the run's token with a CompareAndSwap on the
// version last seen. Only checkpoints of progress are counted in Stats;
// the claim at the start of a Run is not.
func (r *run) commit(ctx context.Context, cp Checkpoint, progress bool) error {
	cp.Token, cp.Time, cp.Sink = r.token, r.cfg.clock.Now(), r.sinkID
	enc := EncodeCheckpoint(cp)
	for attempt := 0; ; attempt++ {
		v, err := r.cfg.store.CompareAndSwap(ctx, r.token, r.s.Key, r.storedVersion, enc)
		if err == nil {
			r.stored, r.storedVersion = cp, v
			if !progress {
				return nil
			}
			r.sinceCP, r.lastCP = 0, cp.Time
			r.acknowledge(cp.Pos)
			r.cfg.log.Debug("replicate: checkpoint committed", "key", r.s.Key, "pos", cp.Pos, "token", r.token, "version", v)
			r.s.stats.update(func(st *Stats) {
				st.Checkpoints++
				st.LastCheckpoint = cp.Time
				st.LastCheckpointPos = cp.Pos
			})
			return nil
		}
		if !errors.Is(err, storage.ErrConflict) || attempt > 0 {
			return fmt.Errorf("replicate: commit checkpoint %q at %x under token %d: %w", r.s.Key, cp.Pos, r.token, err)
		}
		// Someone else wrote the key: find out who before trying again.
		got, ver, lerr := LoadCheckpoint(ctx, r.cfg.store, r.s.Key)
		if lerr != nil {
			return lerr
		}
		if got.Token > r.token {
			return fmt.Errorf("replicate: checkpoint %q: %w", r.s.Key, fence.Stale(r.token, got.Token))
		}
		if !progress && got.Token < r.token {
			// The claim has not admitted r.token yet, so an older term
			// could still write; skipping the claim would leave it
			// unfenced, and the resume point may have moved.
			return fmt.Errorf("%w: key %q now at %x under token %d, this Run's token %d", errClaimRace, r.s.Key, got.Pos, got.Token, r.token)
		}
		r.stored, r.storedVersion = got, ver
		if r.cfg.compare(got.Pos, cp.Pos) > 0 {
			return fmt.Errorf("%w: key %q at %x, this stream at %x, both under token %d", ErrCheckpointAhead, r.s.Key, got.Pos, cp.Pos, r.token)
		}
		if !r.newer(cp) {
			return nil
		}
	}
}

// acknowledge tells an Acknowledger Cursor that every record up to p is
// durable.
func (r *run) acknowledge(p Position) {
	if r.acker != nil {
		r.acker.Acknowledge(p)
	}
}

// beat sends a heartbeat through the pipeline; the batch is empty.
func (r *run) beat(ctx context.Context) error {
	now := r.cfg.clock.Now()
	hb := Heartbeat{Pos: r.applied.Pos, Time: now}
	if hs, ok := r.cfg.sink.(HeartbeatSink); ok {
		if err := hs.ApplyHeartbeat(ctx, r.token, hb); err != nil {
			return fmt.Errorf("replicate: stream %q: sink heartbeat under token %d: %w", r.s.Key, r.token, err)
		}
	}
	done := r.cfg.clock.Now()
	r.lastActivity = done
	r.s.stats.update(func(st *Stats) {
		st.Heartbeats++
		st.Lag = done.Sub(now)
		st.LastApplied = done
	})
	return nil
}

// fail handles an error from the pipeline: if ctx ended, it is a clean
// stop; a stale token stops at once; anything else still gets a final
// checkpoint of what was acknowledged.
func (r *run) fail(ctx context.Context, err error) error {
	if ctx.Err() != nil && !errors.Is(err, fence.ErrStale) {
		return r.stop(ctx, nil)
	}
	return r.stop(ctx, err)
}

// stop ends the Run: reader stopped, cursor closed, final checkpoint.
func (r *run) stop(ctx context.Context, cause error) error {
	r.stopReader()
	<-r.readerDone
	r.acker = nil // the Cursor is closed: nothing more to tell it
	cerr := r.cur.Close()
	if errors.Is(cause, fence.ErrStale) {
		r.cfg.log.Warn("replicate: stream deposed", "key", r.s.Key, "token", r.token, "err", cause)
		return cause
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.stopTimeout)
	defer cancel()
	ckErr := r.checkpoint(sctx)
	r.cfg.log.Info("replicate: stream stopped", "key", r.s.Key, "token", r.token, "checkpoint", r.stored.Pos, "cause", cause, "checkpoint_error", ckErr)
	if ckErr == nil && cause == nil && cerr != nil {
		return fmt.Errorf("replicate: stream %q: close cursor: %w", r.s.Key, cerr)
	}
	if cause == nil {
		return ckErr
	}
	return errors.Join(cause, ckErr)
}

// idleTimer is a clock.Timer that can be disarmed, with a nil channel
// while disarmed so that a select ignores it.
type idleTimer struct {
	t     clock.Timer
	armed bool
}

func newIdleTimer(c clock.Clock) *idleTimer {
	t := c.NewTimer(time.Hour)
	t.Stop()
	return &idleTimer{t: t}
}

func (t *idleTimer) arm(d time.Duration) {
	if d <= 0 {
		d = time.Nanosecond
	}
	t.t.Reset(d)
	t.armed = true
}

func (t *idleTimer) disarm() {
	if t.armed {
		t.t.Stop()
		t.armed = false
	}
}

func (t *idleTimer) stop() { t.t.Stop() }

func (t *idleTimer) c() <-chan time.Time {
	if !t.armed {
		return nil
	}
	return t.t.C()
}
