package replicate

import (
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
//   - Resume: with a DurableSink, Run resumes from where the Sink stands.
//     When the Sink is ahead of the stored checkpoint and the checkpoint
//     carries no State, the Source is opened at the Sink's position; when
//     the checkpoint has State, the Source is opened at the checkpoint (so
//     the State stays valid) and the records up to the Sink's position are
//     read but not applied again. When the Sink is behind the checkpoint
//     (restored from a backup, or replaced by a copy), the Source is
//     opened at the Sink's position, with no State, and the records in
//     between are delivered again; if the Source cannot be read from there
//     any more (it was trimmed, or it needs State it does not have there,
//     and says so by failing Open), Run stops before applying anything,
//     with an error matching ErrGap that names both positions. Records are never
//     skipped. With any other Sink, Run resumes from the checkpoint.
//   - Identity: a checkpoint records the ID of the sink it was written
//     for, and an IdentifiedSink the key of the stream it belongs to; Run
//     refuses a checkpoint written for another sink, or a sink bound to
//     another stream, with an error matching ErrIdentity, before it
//     applies anything (see IdentifiedSink, and RebuildCheckpoint to point
//     a stream at a new target on purpose).
//   - Fencing: Run first re-commits the checkpoint it resumes from under its
//     own token (the claim), so a newer term is detected before anything
//     is applied and older terms are fenced out of the Store at once.
//     Before it reads a DurableSink's position it binds an IdentifiedSink
//     (or applies an empty batch to another DurableSink) under its token,
//     so that a fencing DurableSink refuses older terms from then on and
//     no batch of theirs lands after the read.
//     Every checkpoint is a CompareAndSwap under Run's token, on
//     the version Run last read or wrote, and only ever to a position
//     after the stored one, so the stored checkpoint never goes backwards.
//     A commit refused with fence.ErrStale (a newer term wrote to the
//     Store) stops Run with that error. The token is passed to every
//     Sink.Apply, so a fencing Sink refuses a deposed member as well.
//   - Conditional apply: with a ConditionalSink every batch is applied
//     with ApplyAt at the position Run believes the sink is at (the one it
//     read at open, then the one after each batch it applied). If the sink
//     stands elsewhere — a batch of an earlier Run under the same token
//     landed late — nothing is applied and Run stops with an error
//     matching ErrPositionMismatch, after the final checkpoint of what it
//     applied itself. Running it again (ha.Node restarts failed work)
//     reads the sink's position afresh and resumes after the late batch.
//   - Delivery: with a ConditionalSink each record is applied exactly once
//     across any number of Runs and failovers. A DurableSink without
//     ApplyAt gets the same except in one window: a Run that fails with a
//     batch still in flight to the sink (its Apply timed out or was
//     cancelled, but the target may still commit it) and is run again
//     under the same token may see that batch land after it read the
//     sink's position, and then applies its records again. With any other Sink each
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
// A Cursor that is an Acknowledger is told each position once it is
// durable (applied by a DurableSink, or in a committed checkpoint), so a
// Source that keeps its log until told (a database's replication slot)
// never releases what a successor may need. When the sink stands behind
// the stored checkpoint, the records are durable only as far as the sink
// holds them: the checkpoint is not acknowledged, and neither is any
// position the sink has not applied again. A Cursor that is an
// AtomicChunker with AtomicChunks true has each Next result applied in
// one batch (whole source transactions).
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
	Logger *slog.Logger // nil: slog.Default()

	running atomic.Bool
	stats   statsBox
}

// Stats returns a snapshot of the Stream's counters. It is safe to call
// concurrently with Run.
func (s *Stream) Stats() Stats { return s.stats.snapshot() }

// Run streams under token t until ctx ends or something fails. To run
// under a lease.Term, as ha.Node's work does, use RunTerm.
//
// When ctx ends, Run abandons the batch it has not yet applied (a batch
// whose Apply was interrupted counts as not applied), stops the reader,
// commits a final checkpoint covering every acknowledged batch within
// StopTimeout, and returns nil if that commit succeeded or was not needed
// (as when ctx ends before the Source is open).
// Otherwise Run returns the first error: a stale token (matching
// fence.ErrStale, from the Store or the Sink), a stored checkpoint that
// cannot be decoded (naming the key), a checkpoint and a sink that do not
// belong together (ErrIdentity), a sink behind a checkpoint that the
// Source cannot close the gap to (ErrGap), or an error of the Source, Sink
// or Store. After a Source or Sink error Run still tries the final
// checkpoint and joins its error, if any, to the one it returns.
func (s *Stream) Run(ctx context.Context, t fence.Token) error {
	cfg, err := s.config()
	if err != nil {
		return err
	}
	return s.run(ctx, cfg, t)
}

// run is Run with the configuration decided.
func (s *Stream) run(ctx context.Context, cfg config, t fence.Token) error {
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

	// cond is the Sink as a ConditionalSink, or nil; sinkPos is where
	// Run believes it stands: as read at open, then after each batch
	// applied. It aliases the Pos of a Record or Checkpoint, never
	// modified.
	cond    ConditionalSink
	sinkPos Position
	// behind: the sink stood behind the stored checkpoint when the Run
	// opened, and the Source is opened at the sink's position.
	behind bool
	// sinkID is the sink's ID, recorded in every checkpoint committed.
	sinkID string

	// durable: the Sink is a DurableSink, so an applied batch is durable
	// at once. acker is the Cursor as an Acknowledger (nil: not one, or
	// closed); atomic: its chunks are never split across batches.
	durable bool
	acker   Acknowledger
	atomic  bool

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

// errClaimRace is returned by a claim whose CompareAndSwap lost to a
// writer with an older token: until the claim commits, this Run's token is
// not admitted, so a deposed member may still change the checkpoint. The
// resume point must then be decided again from what is stored.
var errClaimRace = errors.New("replicate: checkpoint changed under an older token during the claim")

// maxClaimAttempts bounds how often open decides again after errClaimRace.
const maxClaimAttempts = 3

// open loads the checkpoint, decides where to resume, claims the
// checkpoint and opens the Source.
func (r *run) open(ctx context.Context) error {
	s, cfg := r.s, r.cfg
	var from Checkpoint
	var skip Position
	for attempt := 1; ; attempt++ {
		var err error
		from, skip, err = r.claim(ctx)
		if err == nil {
			break
		}
		if !errors.Is(err, errClaimRace) || attempt >= maxClaimAttempts {
			return err
		}
	}
	cur, err := cfg.source.Open(ctx, from)
	if err != nil {
		if r.behind {
			return fmt.Errorf("%w: stream %q: the sink %s stands at %s, behind the checkpoint at %s, and the source cannot be read from %s: %w; "+
				"restore the target from a copy at or after %s, or make the source's records after %s readable again; nothing was applied",
				ErrGap, s.Key, sinkName(r.stored.Sink), hexPos(from.Pos), hexPos(r.stored.Pos), hexPos(from.Pos), err,
				hexPos(r.stored.Pos), hexPos(from.Pos))
		}
		return fmt.Errorf("replicate: stream %q: open source at %x: %w", s.Key, from.Pos, err)
	}
	now := cfg.clock.Now()
	r.cur, r.applied, r.lastCP, r.lastActivity = cur, from, now, now
	_, r.durable = cfg.sink.(DurableSink)
	r.acker, _ = cur.(Acknowledger)
	if ac, ok := cur.(AtomicChunker); ok {
		r.atomic = ac.AtomicChunks()
	}
	r.s.stats.update(func(st *Stats) { st.Resumes++ })
	cfg.log.Info("replicate: stream resumed", "key", s.Key, "token", r.token, "pos", from.Pos, "sink", r.stored.Sink)

	rctx, cancel := context.WithCancel(ctx)
	r.chunks = make(chan chunk, cfg.readAhead)
	r.stopReader = cancel
	r.readerDone = make(chan struct{})
	go r.read(rctx, skip)
	return nil
}

// claim loads the checkpoint, checks that it and the sink belong
// together, decides where to resume (from, and the DurableSink position up
// to which records are skipped) and commits the checkpoint under the Run's
// token: the one it found, naming the sink, or the sink's position when
// the sink is ahead of it.
func (r *run) claim(ctx context.Context) (from Checkpoint, skip Position, err error) {
	s, cfg := r.s, r.cfg
	cp, ver, err := LoadCheckpoint(ctx, cfg.store, s.Key)
	if err != nil {
		return Checkpoint{}, nil, err
	}
	if cp.Token > r.token {
		return Checkpoint{}, nil, fmt.Errorf("replicate: checkpoint %q was written under token %d: %w", s.Key, cp.Token, fence.Stale(r.token, cp.Token))
	}
	r.stored, r.storedVersion = cp, ver
	sinkID, err := r.bindSink(ctx, cp)
	if err != nil {
		return Checkpoint{}, nil, err
	}
	r.sinkID = sinkID
	from, claimed := cp, cp
	r.behind = false
	if ds, ok := cfg.sink.(DurableSink); ok {
		sp, err := ds.Position(ctx)
		if err != nil {
			return Checkpoint{}, nil, fmt.Errorf("replicate: stream %q: read sink position: %w", s.Key, err)
		}
		r.cond, _ = ds.(ConditionalSink)
		r.sinkPos = sp
		switch c := cfg.compare(sp, cp.Pos); {
		case c > 0 && len(cp.State) == 0:
			from = Checkpoint{Pos: sp}
			claimed = from
			cfg.log.Info("replicate: sink is ahead of the checkpoint; resuming from the sink", "key", s.Key, "checkpoint", cp.Pos, "sink_pos", sp)
		case c > 0:
			skip = sp
			cfg.log.Info("replicate: sink is ahead of the checkpoint; reading from the checkpoint and skipping what the sink has", "key", s.Key, "checkpoint", cp.Pos, "sink_pos", sp)
		case c < 0:
			// The target lost records it had acknowledged (restored
			// from a backup): deliver them again from where it
			// stands. The stored checkpoint stays where it is; it
			// never goes backwards.
			from, r.behind = Checkpoint{Pos: sp}, true
			cfg.log.Warn("replicate: sink is behind the checkpoint; delivering the records in between again", "key", s.Key, "checkpoint", cp.Pos, "sink_pos", sp, "sink", sinkID)
		}
	}
	// Claim the checkpoint for this term before anything is applied: the
	// commit admits t in the Store, so older terms' checkpoint writes fail
	// from now on, and a newer term makes this Run fail before it writes
	// anything to the Sink.
	// It is done even when the stored checkpoint already carries t: the
	// Store may have admitted a larger token since it was written.
	if err := r.commit(ctx, claimed, false); err != nil {
		return Checkpoint{}, nil, err
	}
	return from, skip, nil
}

// bindSink checks that the stored checkpoint cp and the sink belong
// together (see ErrIdentity) and fences the sink under the Run's token: an
// IdentifiedSink is bound to this stream, another DurableSink gets an
// empty batch, so that a batch a deposed member still has in flight is
// refused from now on instead of landing after the position is read. It
// returns the sink ID the Run's checkpoints are to record: the sink's, or
// for a sink without identity the one the checkpoint already names.
func (r *run) bindSink(ctx context.Context, cp Checkpoint) (string, error) {
	s, cfg := r.s, r.cfg
	is, ok := cfg.sink.(IdentifiedSink)
	if !ok {
		if cp.Sink != "" {
			// Nothing to compare: a wrapper may hide the identity of
			// the sink the checkpoint was written for. Say so, and
			// keep the ID for a Run whose sink can be checked.
			cfg.log.Warn("replicate: the sink has no identity; cannot check that the checkpoint was written for it",
				"key", s.Key, "checkpoint_sink", cp.Sink, "sink_type", fmt.Sprintf("%T", cfg.sink))
		}
		if ds, ok := cfg.sink.(DurableSink); ok {
			if err := ds.Apply(ctx, r.token, nil); err != nil {
				return "", fmt.Errorf("replicate: stream %q: fence the sink under token %d: %w", s.Key, r.token, err)
			}
		}
		return cp.Sink, nil
	}
	id, err := is.Identity(ctx)
	if err != nil {
		return "", fmt.Errorf("replicate: stream %q: read the sink's identity: %w", s.Key, err)
	}
	if cp.Sink != "" && cp.Sink != id.ID {
		return "", fmt.Errorf("%w: checkpoint %q at %s was written for sink %s, but this stream's sink is %s "+
			"(the key or prefix is used for another target, or the target was replaced); nothing was applied. "+
			"If the stream is to deliver to this sink on purpose, run RebuildCheckpoint with it",
			ErrIdentity, s.Key, hexPos(cp.Pos), cp.Sink, sinkName(id.ID))
	}
	if id.Stream != "" && id.Stream != s.Key {
		return "", BoundElsewhere(id.ID, id.Stream, s.Key)
	}
	id, err = is.Bind(ctx, r.token, "", s.Key)
	if err != nil {
		return "", fmt.Errorf("replicate: stream %q: bind the sink under token %d: %w", s.Key, r.token, err)
	}
	return id.ID, nil
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
