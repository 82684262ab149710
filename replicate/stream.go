package replicate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/lease/clock"
	"github.com/hakit/hakit/storage"
)

// ErrRunning is returned by Run when the same Stream is already running.
var ErrRunning = errors.New("replicate: stream is already running")

// ErrCheckpointAhead is wrapped by the error a Run stops with when it finds
// that the stored checkpoint was advanced past its own progress by another
// writer holding the same token — two streams configured with one key and
// one term, which hakit cannot make safe.
var ErrCheckpointAhead = errors.New("replicate: stored checkpoint moved ahead of this stream")

// Stream moves records from a Source to a Sink and keeps a checkpoint of
// its progress under Key in a fenced Store. Fill in the fields and call
// Run with the current term's token; zero fields take the documented
// defaults, and Validate names any field that is out of range.
//
// # Guarantees
//
//   - Resume: Run starts from the newer of the stored checkpoint and, if the
//     Sink is a DurableSink, the Sink's own position. When the Sink is ahead
//     and the checkpoint carries no State, the Source is opened at the
//     Sink's position; when the checkpoint has State, the Source is opened
//     at the checkpoint (so the State stays valid) and the records up to the
//     Sink's position are read but not applied again.
//   - Fencing: Run first re-commits the checkpoint it resumes from under its
//     own token (the claim), so a newer term is detected before anything
//     is applied and older terms are fenced out of the Store at once.
//     Every checkpoint is a CompareAndSwap under Run's token, on
//     the version Run last read or wrote, and only ever to a position
//     after the stored one, so the stored checkpoint never goes backwards.
//     A commit refused with fence.ErrStale (a newer term wrote to the
//     Store) stops Run with that error. The token is passed to every
//     Sink.Apply, so a fencing Sink refuses a deposed member as well.
//   - Delivery: with a DurableSink each record is applied exactly once
//     across any number of Runs and failovers. With any other Sink each
//     record is applied at least once; a Run that stops without its final
//     checkpoint replays at most CheckpointRecords+MaxRecords-1 records,
//     or the records applied within CheckpointInterval, whichever the
//     policy reached first.
//
// What it does not guarantee: a Sink that is not durable may see a record
// twice, and a Source's records must have strictly increasing positions
// under Compare for the DurableSink skip to be exact.
//
// # Pipeline
//
// One goroutine reads from the Cursor (up to ReadAhead chunks ahead) and
// takes the Cursor's Checkpoint after every Next; Run's goroutine groups
// the chunks into batches of at most MaxRecords records and MaxBytes bytes,
// waiting at most MaxWait for a batch to fill, applies them in order and
// checkpoints by the policy. The batch slice is reused after Apply returns:
// a Sink may keep the Records' Data but not the slice. The Stream keeps
// the Checkpoints a Cursor returns, so a Cursor must not modify their Pos
// or State afterwards.
//
// A Stream must not be copied after first use. Stats may be called at any
// time, from any goroutine; Run runs at most once at a time.
type Stream struct {
	Source Source        // required
	Sink   Sink          // required; may implement DurableSink and HeartbeatSink
	Store  storage.Store // required: where the checkpoint lives
	Key    string        // required: the checkpoint's key (storage.ValidateKey)

	// Compare orders positions. Nil uses the Source's Comparer; a Source
	// without one needs Compare set.
	Compare func(a, b Position) int

	MaxRecords int           // records per batch; 0: DefaultMaxRecords
	MaxBytes   int           // sum of len(Data) per batch (a single bigger record goes alone); 0: DefaultMaxBytes
	MaxWait    time.Duration // how long a partial batch waits to fill; 0: apply what is there at once

	// The checkpoint policy: a checkpoint is written once CheckpointRecords
	// records were applied since the last one, or CheckpointInterval has
	// passed with progress pending, whichever comes first, and when Run
	// stops. Zero selects the default (DefaultCheckpointRecords,
	// DefaultCheckpointInterval); a negative value disables that trigger.
	CheckpointRecords  int
	CheckpointInterval time.Duration

	// HeartbeatInterval is how long the Source may be idle before a
	// Heartbeat goes through the pipeline, and how often after that. Zero
	// selects DefaultHeartbeatInterval, negative disables heartbeats.
	HeartbeatInterval time.Duration

	// StopTimeout bounds the final checkpoint after ctx ended; 0:
	// DefaultStopTimeout.
	StopTimeout time.Duration
	// ReadAhead is how many chunks the reader may get ahead of the Sink;
	// 0: DefaultReadAhead.
	ReadAhead int

	Clock  clock.Clock  // nil: the real clock
	Logger *slog.Logger // nil: discard

	running atomic.Bool
	stats   statsBox
}

// Stats returns a snapshot of the Stream's counters. It is safe to call
// concurrently with Run.
func (s *Stream) Stats() Stats { return s.stats.snapshot() }

// Run streams under token t until ctx ends or something fails.
//
// When ctx ends, Run abandons the batch it has not yet applied (a batch
// whose Apply was interrupted counts as not applied), stops the reader,
// commits a final checkpoint covering every acknowledged batch within
// StopTimeout, and returns nil if that commit succeeded or was not needed
// (as when ctx ends before the Source is open).
// Otherwise Run returns the first error: a stale token (matching
// fence.ErrStale, from the Store or the Sink), a stored checkpoint that
// cannot be decoded (naming the key), or an error of the Source, Sink or
// Store. After a Source or Sink error Run still tries the final checkpoint
// and joins its error, if any, to the one it returns.
func (s *Stream) Run(ctx context.Context, t fence.Token) error {
	cfg, err := s.config()
	if err != nil {
		return err
	}
	if t == 0 {
		return fmt.Errorf("replicate: run stream %q: %w", s.Key, fence.ErrNoToken)
	}
	if !s.running.CompareAndSwap(false, true) {
		return fmt.Errorf("%w: key %q", ErrRunning, s.Key)
	}
	defer s.running.Store(false)

	r := &run{s: s, cfg: cfg, token: t}
	if err := r.open(ctx); err != nil {
		if ctx.Err() != nil && !errors.Is(err, fence.ErrStale) {
			return nil // stopped before anything was applied
		}
		return err
	}
	return r.loop(ctx)
}

// chunk is what one Cursor.Next produced, with the Cursor's checkpoint
// taken right after it.
type chunk struct {
	recs    []Record
	covered int        // records the Cursor returned, including skipped ones
	cp      Checkpoint // restart point after recs
	at      time.Time  // when the reader received them
	err     error      // the Cursor failed; no records
}

// run is the state of one Run. Only Run's goroutine touches it, except
// the reader goroutine's own fields noted below.
type run struct {
	s     *Stream
	cfg   config
	token fence.Token

	cur        Cursor
	chunks     chan chunk
	stopReader context.CancelFunc
	readerDone chan struct{}

	stored        Checkpoint      // the checkpoint in the Store, as last read or written
	storedVersion storage.Version // its version (0: absent)
	applied       Checkpoint      // covers every record the Sink acknowledged
	sinceCP       int             // records covered since the stored checkpoint
	lastCP        time.Time       // when the stored checkpoint was written, or the Run started

	batch      []Record
	batchBytes int
	batchCP    Checkpoint // restart point after the last whole chunk in batch
	batchHasCP bool
	batchCover int       // records covered by the whole chunks in batch
	batchAt    time.Time // when the oldest chunk in batch was read

	lastActivity time.Time
}

// open loads the checkpoint, decides where to resume and opens the Source.
func (r *run) open(ctx context.Context) error {
	s, cfg := r.s, r.cfg
	cp, ver, err := LoadCheckpoint(ctx, s.Store, s.Key)
	if err != nil {
		return err
	}
	if cp.Token > r.token {
		return fmt.Errorf("replicate: checkpoint %q was written under token %d: %w", s.Key, cp.Token, fence.Stale(r.token, cp.Token))
	}
	r.stored, r.storedVersion = cp, ver
	from, skip := cp, Position(nil)
	if ds, ok := s.Sink.(DurableSink); ok {
		sp, err := ds.Position(ctx)
		if err != nil {
			return fmt.Errorf("replicate: stream %q: read sink position: %w", s.Key, err)
		}
		if cfg.compare(sp, cp.Pos) > 0 {
			if len(cp.State) == 0 {
				from = Checkpoint{Pos: sp}
			} else {
				skip = sp
			}
			cfg.log.Info("replicate: sink is ahead of the checkpoint", "key", s.Key, "checkpoint", cp.Pos, "sink", sp, "skip", skip != nil)
		}
	}
	// Claim the checkpoint for this term before anything is applied: the
	// commit admits t in the Store, so older terms' checkpoint writes fail
	// from now on, and a newer term makes this Run fail before it writes
	// anything to the Sink.
	// It is done even when the stored checkpoint already carries t: the
	// Store may have admitted a larger token since it was written.
	if err := r.commit(ctx, from, false); err != nil {
		return err
	}
	cur, err := s.Source.Open(ctx, from)
	if err != nil {
		return fmt.Errorf("replicate: stream %q: open source at %x: %w", s.Key, from.Pos, err)
	}
	now := cfg.clock.Now()
	r.cur, r.applied, r.lastCP, r.lastActivity = cur, from, now, now
	r.s.stats.update(func(st *Stats) { st.Resumes++ })
	cfg.log.Info("replicate: stream resumed", "key", s.Key, "token", r.token, "pos", from.Pos)

	rctx, cancel := context.WithCancel(ctx)
	r.chunks = make(chan chunk, cfg.readAhead)
	r.stopReader = cancel
	r.readerDone = make(chan struct{})
	go r.read(rctx, skip)
	return nil
}

// read is the reader goroutine. It owns r.cur until it returns.
func (r *run) read(ctx context.Context, skip Position) {
	defer close(r.readerDone)
	for {
		recs, err := r.cur.Next(ctx, r.cfg.maxRecords)
		var c chunk
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			c = chunk{err: err}
		} else {
			c = chunk{recs: recs, covered: len(recs), cp: r.cur.Checkpoint(), at: r.cfg.clock.Now()}
			if skip != nil {
				i := 0
				for i < len(recs) && r.cfg.compare(recs[i].Pos, skip) <= 0 {
					i++
				}
				c.recs = recs[i:]
				if i < len(recs) {
					skip = nil
				}
			}
		}
		select {
		case r.chunks <- c:
		case <-ctx.Done():
			return
		}
		if c.err != nil {
			return
		}
	}
}

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
	if cfg.policy.interval > 0 {
		cpT.arm(cfg.policy.interval)
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
			d := cfg.policy.interval - cfg.clock.Now().Sub(r.lastCP)
			if d <= 0 {
				d = cfg.policy.interval
			}
			cpT.arm(d)
		case <-hbT.c():
			hbT.armed = false
			idle := cfg.clock.Now().Sub(r.lastActivity)
			if idle >= cfg.heartbeat && len(r.batch) == 0 {
				if err := r.beat(ctx); err != nil {
					return r.fail(ctx, err)
				}
				idle = 0
			}
			hbT.arm(cfg.heartbeat - idle)
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

// flush applies the batch, records progress and checkpoints if due.
func (r *run) flush(ctx context.Context) error {
	if len(r.batch) == 0 && !r.batchHasCP {
		return nil
	}
	if n := len(r.batch); n > 0 {
		if err := r.s.Sink.Apply(ctx, r.token, r.batch); err != nil {
			return fmt.Errorf("replicate: stream %q: sink apply of %d records under token %d: %w", r.s.Key, n, r.token, err)
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
	if !r.cfg.policy.due(r.sinceCP, elapsed) {
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
	cp.Token, cp.Time = r.token, r.cfg.clock.Now()
	enc := EncodeCheckpoint(cp)
	for attempt := 0; ; attempt++ {
		v, err := r.s.Store.CompareAndSwap(ctx, r.token, r.s.Key, r.storedVersion, enc)
		if err == nil {
			r.stored, r.storedVersion = cp, v
			if !progress {
				return nil
			}
			r.sinceCP, r.lastCP = 0, cp.Time
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
		got, ver, lerr := LoadCheckpoint(ctx, r.s.Store, r.s.Key)
		if lerr != nil {
			return lerr
		}
		if got.Token > r.token {
			return fmt.Errorf("replicate: checkpoint %q: %w", r.s.Key, fence.Stale(r.token, got.Token))
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

// beat sends a heartbeat through the pipeline; the batch is empty.
func (r *run) beat(ctx context.Context) error {
	now := r.cfg.clock.Now()
	hb := Heartbeat{Pos: r.applied.Pos, Time: now}
	if hs, ok := r.s.Sink.(HeartbeatSink); ok {
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
