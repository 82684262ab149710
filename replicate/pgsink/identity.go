package pgsink

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/jackc/pgx/v5"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/replicate"
)

// The target's identity lives in the stream's position row, next to its
// position: sink_id, a random ID written when the row is created (by the
// first Bind, or the first Apply of a stream that was never bound), and
// stream_key, the checkpoint key of the stream the row is bound to. Being
// part of the target's own state, the ID comes back with a restored backup
// of the target (so a Stream recognises it, finds it behind its checkpoint
// and replays to it) and is new on a new target (so a Stream refuses a
// checkpoint written for another one).

// Identity returns the target's ID and the stream it is bound to, from the
// stream's position row (replicate.IdentifiedSink). With no row yet, both
// are empty.
func (s *Sink) Identity(ctx context.Context) (replicate.SinkIdentity, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.connLocked(ctx)
	if err != nil {
		return replicate.SinkIdentity{}, err
	}
	var id, stream *string
	err = c.QueryRow(ctx, `SELECT sink_id, stream_key FROM `+s.cfg.PositionTable+` WHERE stream = $1`, s.cfg.Stream).Scan(&id, &stream)
	if errors.Is(err, pgx.ErrNoRows) {
		return replicate.SinkIdentity{}, nil
	}
	if err != nil {
		s.dropIfBusy(c)
		return replicate.SinkIdentity{}, fmt.Errorf("pgsink: stream %q: read identity in %s on %s: %w", s.cfg.Stream, s.cfg.PositionTable, s.where(), err)
	}
	return replicate.SinkIdentity{ID: deref(id), Stream: deref(stream)}, nil
}

// Bind binds the target to the stream whose checkpoint key is to, if its
// position row is bound to from or to already, and gives the row an ID if
// it has none (replicate.IdentifiedSink). It runs in one transaction that
// creates the row if there is none and locks it, refuses a token below
// the row's with fence.ErrStale and admits t, as Apply does; a row bound
// to another stream is refused with an error matching
// replicate.ErrIdentity that names it.
func (s *Sink) Bind(ctx context.Context, t fence.Token, from, to string) (replicate.SinkIdentity, error) {
	if t == 0 {
		return replicate.SinkIdentity{}, fence.ErrNoToken
	}
	if t > math.MaxInt64 {
		return replicate.SinkIdentity{}, fmt.Errorf("pgsink: token %d does not fit the bigint token column", t)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.connLocked(ctx)
	if err != nil {
		return replicate.SinkIdentity{}, err
	}
	id, err := s.bind(ctx, c, t, from, to)
	if err != nil {
		s.dropIfBusy(c)
	}
	return id, err
}

// bind is Bind's transaction on c.
func (s *Sink) bind(ctx context.Context, c *pgx.Conn, t fence.Token, from, to string) (replicate.SinkIdentity, error) {
	pt, stream := s.cfg.PositionTable, s.cfg.Stream
	tx, err := c.Begin(ctx)
	if err != nil {
		return replicate.SinkIdentity{}, fmt.Errorf("pgsink: stream %q: begin on %s: %w", stream, s.where(), err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }() // a no-op after Commit
	newID := replicate.NewSinkID()
	if _, err := tx.Exec(ctx, `INSERT INTO `+pt+` (stream, token, sink_id) VALUES ($1, $2, $3) ON CONFLICT (stream) DO NOTHING`,
		stream, int64(t), newID); err != nil {
		return replicate.SinkIdentity{}, fmt.Errorf("pgsink: stream %q: create position row in %s (has Setup run?): %w", stream, pt, err)
	}
	var cur int64
	var id, bound *string
	if err := tx.QueryRow(ctx, `SELECT token, sink_id, stream_key FROM `+pt+` WHERE stream = $1 FOR UPDATE`, stream).
		Scan(&cur, &id, &bound); err != nil {
		return replicate.SinkIdentity{}, fmt.Errorf("pgsink: stream %q: lock position row in %s: %w", stream, pt, err)
	}
	if fence.Token(cur) > t {
		return replicate.SinkIdentity{}, fmt.Errorf("pgsink: stream %q: bind to stream %q: %w", stream, to, fence.Stale(t, fence.Token(cur)))
	}
	if b := deref(bound); b != from && b != to {
		return replicate.SinkIdentity{}, fmt.Errorf("pgsink: stream %q in %s on %s: %w", stream, pt, s.where(), replicate.BoundElsewhere(deref(id), b, to))
	}
	sinkID := deref(id)
	if sinkID == "" {
		sinkID = newID
	}
	if _, err := tx.Exec(ctx, `UPDATE `+pt+` SET token = $1, sink_id = $2, stream_key = $3, updated_at = now() WHERE stream = $4`,
		int64(t), sinkID, to, stream); err != nil {
		return replicate.SinkIdentity{}, fmt.Errorf("pgsink: stream %q: bind to stream %q: %w", stream, to, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return replicate.SinkIdentity{}, fmt.Errorf("pgsink: stream %q: commit bind under token %d: %w", stream, t, err)
	}
	return replicate.SinkIdentity{ID: sinkID, Stream: to}, nil
}

// dropIfBusy drops c after a failure that may have left it in a
// transaction or broken; the next call reconnects.
func (s *Sink) dropIfBusy(c *pgx.Conn) {
	if c.PgConn().IsClosed() || c.PgConn().TxStatus() != 'I' {
		s.drop()
	}
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
