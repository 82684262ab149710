// Package memrepl provides in-memory implementations of the replicate
// interfaces: a Source, a fencing Sink and a DurableSink. They are for
// tests, examples and simulations; nothing survives the process.
//
// Positions are 8-byte big-endian record counts (the position after the
// n-th record is n), so replicate.CompareBytes orders them.
package memrepl

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/replicate"
)

var (
	// ErrPosition is wrapped by the error Open returns for a position
	// that is malformed or beyond the end of the Source.
	ErrPosition = errors.New("memrepl: bad position")
	// ErrTrimmed is wrapped by the error Open and Next return for a
	// position whose following records were removed by Trim.
	ErrTrimmed = errors.New("memrepl: records trimmed")
)

// Pos returns the position after the first n records.
func Pos(n uint64) replicate.Position { return binary.BigEndian.AppendUint64(nil, n) }

// DecodePos returns the record count a position stands for. A nil
// position is 0; anything but nil or 8 bytes is an error.
func DecodePos(p replicate.Position) (uint64, error) {
	switch len(p) {
	case 0:
		return 0, nil
	case 8:
		return binary.BigEndian.Uint64(p), nil
	default:
		return 0, fmt.Errorf("%w: %d bytes, want 8", ErrPosition, len(p))
	}
}

// Source is an append-only list of records in memory. The zero Source is
// empty and ready to use; it is safe for concurrent use, and any number of
// Cursors may read it while it grows. Trim drops the oldest records, as
// retention does in a real log.
type Source struct {
	mu      sync.Mutex
	base    uint64             // records trimmed: recs[0] is record base+1
	recs    []replicate.Record // the records kept
	changed chan struct{}      // closed and replaced by every Append
}

// Append adds records with the given data and returns the position after
// the last one. The Source keeps the data slices; do not modify them.
func (s *Source) Append(data ...[]byte) replicate.Position {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range data {
		s.recs = append(s.recs, replicate.Record{Pos: Pos(s.base + uint64(len(s.recs)) + 1), Data: d})
	}
	if s.changed != nil {
		close(s.changed)
		s.changed = nil
	}
	return Pos(s.base + uint64(len(s.recs)))
}

// Len returns the number of records appended so far, trimmed ones
// included.
func (s *Source) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return int(s.base) + len(s.recs)
}

// Trim drops the records before position n (the first n records), as a
// log's retention does: a Cursor can no longer be opened before n, and one
// that has not read that far fails with ErrTrimmed. Trimming less than was
// trimmed before does nothing; n beyond the records appended trims them
// all.
func (s *Source) Trim(n uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n <= s.base {
		return
	}
	drop := min(n-s.base, uint64(len(s.recs)))
	s.recs = append([]replicate.Record(nil), s.recs[drop:]...)
	s.base += drop
}

// Records returns a copy of the records kept (appended and not trimmed).
func (s *Source) Records() []replicate.Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]replicate.Record(nil), s.recs...)
}

// Compare orders positions (replicate.Comparer).
func (s *Source) Compare(a, b replicate.Position) int { return replicate.CompareBytes(a, b) }

// Open returns a Cursor after from.Pos. A position beyond the records
// appended so far is an error (ErrPosition): such a position was not
// produced by this Source. A position before the records Trim kept is an
// error too (ErrTrimmed): the records after it are gone. from.State is
// ignored.
func (s *Source) Open(ctx context.Context, from replicate.Checkpoint) (replicate.Cursor, error) {
	n, err := DecodePos(from.Pos)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	base, l := s.base, s.base+uint64(len(s.recs))
	s.mu.Unlock()
	switch {
	case n > l:
		return nil, fmt.Errorf("%w: position %d is beyond the %d records of the source", ErrPosition, n, l)
	case n < base:
		return nil, fmt.Errorf("%w: position %d is before record %d, the oldest kept", ErrTrimmed, n, base+1)
	}
	return &cursor{s: s, next: n}, nil
}

// wait returns the records from i on (i counts every record appended), up
// to max, or a channel that is closed when there may be more.
func (s *Source) wait(i uint64, max int) ([]replicate.Record, <-chan struct{}, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i < s.base {
		return nil, nil, fmt.Errorf("%w: the cursor is at position %d, before record %d, the oldest kept", ErrTrimmed, i, s.base+1)
	}
	if j := i - s.base; j < uint64(len(s.recs)) {
		end := min(uint64(len(s.recs)), j+uint64(max))
		// The full slice expression keeps a reader from appending into
		// the Source's array.
		return s.recs[j:end:end], nil, nil
	}
	if s.changed == nil {
		s.changed = make(chan struct{})
	}
	return nil, s.changed, nil
}

type cursor struct {
	s    *Source
	next uint64
}

// Next returns up to max records after the cursor, waiting for Append if
// there are none; if ctx ends first it returns ctx's error and consumes
// nothing.
func (c *cursor) Next(ctx context.Context, max int) ([]replicate.Record, error) {
	if max <= 0 {
		max = 1
	}
	for {
		recs, ch, err := c.s.wait(c.next, max)
		if err != nil {
			return nil, err
		}
		if len(recs) > 0 {
			c.next += uint64(len(recs))
			return recs, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (c *cursor) Checkpoint() replicate.Checkpoint { return replicate.Checkpoint{Pos: Pos(c.next)} }

func (c *cursor) Close() error { return nil }

// Sink keeps every record and heartbeat applied to it, in order, and
// fences: Apply with a token smaller than one it admitted before fails
// with an error matching fence.ErrStale and keeps nothing. It is a plain
// (not durable) Sink: it does not report a position, so a Stream treats
// it as at-least-once. The zero Sink is ready and safe for concurrent use.
type Sink struct {
	core
}

// NewDiscardSink returns a Sink that fences and counts like a Sink but
// keeps no records (Records returns none; Len and Wait's cond see only the
// count through Len), for benchmarks and load tests with more records than
// fit in memory.
func NewDiscardSink() *Sink { return &Sink{core{discard: true}} }

// DurableSink is a Sink that also keeps the position of the last applied
// record, in the same step as the records, so a Stream delivers to it
// exactly once. The zero DurableSink is ready and safe for concurrent use.
type DurableSink struct {
	core
}

// Position returns the position after the last applied record, or nil.
func (d *DurableSink) Position(ctx context.Context) (replicate.Position, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return d.pos, nil
}

// Identity returns the sink's ID and the stream it is bound to
// (replicate.IdentifiedSink). The ID is made when the sink is first used
// and kept by Backup.
func (d *DurableSink) Identity(ctx context.Context) (replicate.SinkIdentity, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return replicate.SinkIdentity{}, err
	}
	d.ensureID()
	return replicate.SinkIdentity{ID: d.id, Stream: d.stream}, nil
}

// Bind binds the sink to stream to if it is bound to from or to already
// (replicate.IdentifiedSink), fenced and admitting t like Apply.
func (d *DurableSink) Bind(ctx context.Context, t fence.Token, from, to string) (replicate.SinkIdentity, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return replicate.SinkIdentity{}, err
	}
	d.ensureID()
	if err := d.guard.Check(t); err != nil {
		return replicate.SinkIdentity{}, fmt.Errorf("memrepl: bind sink %s to stream %q: %w", d.id, to, err)
	}
	if d.stream != from && d.stream != to {
		return replicate.SinkIdentity{}, fmt.Errorf("memrepl: %w", replicate.BoundElsewhere(d.id, d.stream, to))
	}
	if err := d.guard.Admit(t); err != nil {
		return replicate.SinkIdentity{}, fmt.Errorf("memrepl: bind sink %s to stream %q: %w", d.id, to, err)
	}
	d.stream = to
	d.notify()
	return replicate.SinkIdentity{ID: d.id, Stream: d.stream}, nil
}

// Backup returns a copy of d as it stands now: the same ID, stream,
// records, position and fence, sharing nothing with d afterwards. It
// stands for a backup of a real target, to be restored later in d's place.
func (d *DurableSink) Backup() *DurableSink {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ensureID()
	b := &DurableSink{}
	b.id, b.stream, b.discard, b.n = d.id, d.stream, d.discard, d.n
	b.recs = append([]replicate.Record(nil), d.recs...)
	b.hbs = append([]replicate.Heartbeat(nil), d.hbs...)
	b.pos = append(replicate.Position(nil), d.pos...)
	if high := d.guard.High(); high != 0 {
		_ = b.guard.Admit(high)
	}
	return b
}

// Conditional returns d as a replicate.ConditionalSink: the same sink
// (records, position and fence are shared), plus ApplyAt. A Stream given
// the result refuses to apply a batch anywhere but at the position it
// expects, which closes the window in which a late batch of an earlier Run
// under the same token is applied twice (see replicate.DurableSink).
//
// DurableSink itself has no ApplyAt so that a type embedding it to change
// what Apply does keeps being called: the Stream prefers ApplyAt, and a
// promoted one would bypass the embedder's Apply.
func (d *DurableSink) Conditional() *ConditionalSink { return &ConditionalSink{DurableSink: d} }

// ConditionalSink is a DurableSink with a conditional apply
// (replicate.ConditionalSink). Make one with DurableSink.Conditional; its
// methods other than ApplyAt are the DurableSink's.
type ConditionalSink struct {
	*DurableSink
}

// ApplyAt keeps batch under token t if the sink's position equals from
// (nil: nothing applied yet), in one step under the sink's lock. A stale t
// fails with fence.ErrStale; a sink at another position refuses with an
// error matching replicate.ErrPositionMismatch. Either way nothing is kept
// and the fence is left as it was.
func (c *ConditionalSink) ApplyAt(ctx context.Context, t fence.Token, from replicate.Position, batch []replicate.Record) error {
	return c.apply(ctx, t, batch, func(pos replicate.Position) error {
		if !replicate.SamePosition(pos, from) {
			return fmt.Errorf("memrepl: apply %d records: %w", len(batch), replicate.PositionMismatch(from, pos))
		}
		return nil
	})
}

var (
	_ replicate.HeartbeatSink   = (*Sink)(nil)
	_ replicate.DurableSink     = (*DurableSink)(nil)
	_ replicate.IdentifiedSink  = (*DurableSink)(nil)
	_ replicate.IdentifiedSink  = (*ConditionalSink)(nil)
	_ replicate.ConditionalSink = (*ConditionalSink)(nil)
	_ replicate.HeartbeatSink   = (*ConditionalSink)(nil)
	_ replicate.HeartbeatSink   = (*DurableSink)(nil)
	_ replicate.Comparer        = (*Source)(nil)
)

// core is the state both sinks share.
type core struct {
	mu      sync.Mutex
	guard   fence.Guard
	recs    []replicate.Record
	hbs     []replicate.Heartbeat
	pos     replicate.Position
	changed chan struct{}
	discard bool   // count only
	n       int    // records applied
	id      string // DurableSink's identity, made on first use
	stream  string // the stream a DurableSink is bound to
}

// ensureID gives the sink its ID on first use. c.mu must be held.
func (c *core) ensureID() {
	if c.id == "" {
		c.id = replicate.NewSinkID()
	}
}

// Apply keeps batch under token t. It keeps the Records and their Data
// but not the batch slice.
func (c *core) Apply(ctx context.Context, t fence.Token, batch []replicate.Record) error {
	return c.apply(ctx, t, batch, nil)
}

// apply keeps batch under t if check, called under the lock with the
// current position, returns nil. The fence is checked first, without
// admitting t, so that a refused check leaves everything as it was.
func (c *core) apply(ctx context.Context, t fence.Token, batch []replicate.Record, check func(replicate.Position) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	if check != nil {
		if err := c.guard.Check(t); err != nil {
			return fmt.Errorf("memrepl: apply %d records: %w", len(batch), err)
		}
		if err := check(c.pos); err != nil {
			return err
		}
	}
	if err := c.guard.Admit(t); err != nil {
		return fmt.Errorf("memrepl: apply %d records: %w", len(batch), err)
	}
	if !c.discard {
		c.recs = append(c.recs, batch...)
	}
	c.n += len(batch)
	if len(batch) > 0 {
		c.pos = batch[len(batch)-1].Pos
	}
	c.notify()
	return nil
}

// ApplyHeartbeat keeps hb under token t (replicate.HeartbeatSink).
func (c *core) ApplyHeartbeat(ctx context.Context, t fence.Token, hb replicate.Heartbeat) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := c.guard.Admit(t); err != nil {
		return fmt.Errorf("memrepl: apply heartbeat: %w", err)
	}
	c.hbs = append(c.hbs, hb)
	c.notify()
	return nil
}

func (c *core) notify() {
	if c.changed != nil {
		close(c.changed)
		c.changed = nil
	}
}

// Records returns a copy of the records applied so far, in order.
func (c *core) Records() []replicate.Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]replicate.Record(nil), c.recs...)
}

// Heartbeats returns a copy of the heartbeats applied so far, in order.
func (c *core) Heartbeats() []replicate.Heartbeat {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]replicate.Heartbeat(nil), c.hbs...)
}

// Len returns the number of records applied so far.
func (c *core) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// Reset forgets every record, heartbeat and the position, keeping the
// fence. Benchmarks use it to reuse a sink.
func (c *core) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.recs, c.hbs, c.pos, c.n = c.recs[:0], nil, nil, 0
}

// Wait blocks until cond, called with the records and heartbeats applied
// so far under the sink's lock, returns true, or ctx ends. cond must not
// keep the slices or call the sink. A discarding Sink passes no records;
// use WaitLen with it.
func (c *core) Wait(ctx context.Context, cond func(recs []replicate.Record, hbs []replicate.Heartbeat) bool) error {
	for {
		c.mu.Lock()
		if cond(c.recs, c.hbs) {
			c.mu.Unlock()
			return nil
		}
		if c.changed == nil {
			c.changed = make(chan struct{})
		}
		ch := c.changed
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// WaitLen blocks until at least n records were applied, or ctx ends.
func (c *core) WaitLen(ctx context.Context, n int) error {
	for {
		c.mu.Lock()
		if c.n >= n {
			c.mu.Unlock()
			return nil
		}
		if c.changed == nil {
			c.changed = make(chan struct{})
		}
		ch := c.changed
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
