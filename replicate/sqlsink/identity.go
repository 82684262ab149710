package sqlsink

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/replicate"
)

// Identity returns the target's ID and the stream it is bound to, from the
// stream's position row (replicate.IdentifiedSink): the row's sink_id and
// stream_key columns. The ID is made when Bind first creates or claims the
// row, so a database restored from a backup keeps it and a new database
// has a new one. With no row yet, both are empty.
func (s *Sink) Identity(ctx context.Context) (replicate.SinkIdentity, error) {
	var id, stream sql.NullString
	err := s.db.QueryRowContext(ctx, `SELECT sink_id, stream_key FROM `+s.posTable+` WHERE stream = $1`, s.stream).Scan(&id, &stream)
	if errors.Is(err, sql.ErrNoRows) {
		return replicate.SinkIdentity{}, nil
	}
	if err != nil {
		return replicate.SinkIdentity{}, fmt.Errorf("sqlsink: stream %q: read identity (has Setup run since the upgrade?): %w", s.stream, err)
	}
	return replicate.SinkIdentity{ID: id.String, Stream: stream.String}, nil
}

// Bind binds the target to the stream whose checkpoint key is to, if its
// row is bound to from or to already, and gives the row an ID if it has
// none (replicate.IdentifiedSink). It runs in one transaction that locks
// the row (creating it if there is none), refuses a token below the row's
// with fence.ErrStale and admits t, as Apply does.
func (s *Sink) Bind(ctx context.Context, t fence.Token, from, to string) (replicate.SinkIdentity, error) {
	if t == 0 {
		return replicate.SinkIdentity{}, fence.ErrNoToken
	}
	if int64(t) < 0 {
		return replicate.SinkIdentity{}, fmt.Errorf("sqlsink: token %d does not fit the bigint token column", t)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return replicate.SinkIdentity{}, fmt.Errorf("sqlsink: stream %q: begin: %w", s.stream, err)
	}
	defer func() { _ = tx.Rollback() }() // a no-op after Commit
	newID := replicate.NewSinkID()
	if _, err := tx.ExecContext(ctx, `INSERT INTO `+s.posTable+` (stream, token, sink_id) VALUES ($1, $2, $3) ON CONFLICT (stream) DO NOTHING`,
		s.stream, int64(t), newID); err != nil {
		return replicate.SinkIdentity{}, fmt.Errorf("sqlsink: stream %q: create position row (has Setup run since the upgrade?): %w", s.stream, err)
	}
	var cur int64
	var id, stream sql.NullString
	if err := tx.QueryRowContext(ctx, `SELECT token, sink_id, stream_key FROM `+s.posTable+` WHERE stream = $1 FOR UPDATE`, s.stream).
		Scan(&cur, &id, &stream); err != nil {
		return replicate.SinkIdentity{}, fmt.Errorf("sqlsink: stream %q: lock position row: %w", s.stream, err)
	}
	if fence.Token(cur) > t {
		return replicate.SinkIdentity{}, fmt.Errorf("sqlsink: stream %q: bind to stream %q: %w", s.stream, to, fence.Stale(t, fence.Token(cur)))
	}
	if stream.String != from && stream.String != to {
		return replicate.SinkIdentity{}, fmt.Errorf("sqlsink: stream %q: %w", s.stream, replicate.BoundElsewhere(id.String, stream.String, to))
	}
	if id.String == "" {
		id.String = newID
	}
	if _, err := tx.ExecContext(ctx, `UPDATE `+s.posTable+` SET token = $1, sink_id = $2, stream_key = $3, updated_at = now() WHERE stream = $4`,
		int64(t), id.String, to, s.stream); err != nil {
		return replicate.SinkIdentity{}, fmt.Errorf("sqlsink: stream %q: bind to stream %q: %w", s.stream, to, err)
	}
	if err := tx.Commit(); err != nil {
		return replicate.SinkIdentity{}, fmt.Errorf("sqlsink: stream %q: commit bind under token %d: %w", s.stream, t, err)
	}
	return replicate.SinkIdentity{ID: id.String, Stream: to}, nil
}
