package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/filesink"
	"github.com/hakit/hakit/replicate/pgsink"
	"github.com/hakit/hakit/replicate/sqlsink"
)

// DefaultSQLStream is the row of the SQL sink's position table when
// sink.postgres.stream is empty.
const DefaultSQLStream = "hamirror"

// sinkHandle is the configured sink: both kinds commit their position and the
// writer's token with the records, apply a batch only at the position they
// stand at (replicate.ConditionalSink), and refuse a stale token, so
// delivery is exactly once.
type sinkHandle struct {
	sink  replicate.DurableSink
	pg    *pgsink.Sink                                   // kind "postgres", for its metrics
	token func(ctx context.Context) (fence.Token, error) // the highest token the target admitted
	close func() error
}

// openTarget opens the file sink (sink.path) or the PostgreSQL sink
// (sink.postgres), creating the SQL tables if they do not exist.
func openTarget(ctx context.Context, c SinkConfig) (*sinkHandle, error) {
	if c.Kind == SinkPostgres {
		return openPGSink(ctx, c.Postgres)
	}
	if c.Postgres == nil {
		s, err := filesink.Open(c.Path)
		if err != nil {
			return nil, fmt.Errorf("hamirror: sink.path: %w", err)
		}
		// Conditional: a batch commits only at the position the sink
		// stands at, so a late batch of an earlier run is refused.
		return &sinkHandle{sink: s.Conditional(), close: s.Close, token: func(ctx context.Context) (fence.Token, error) {
			st, err := s.State(ctx)
			return st.Token, err
		}}, nil
	}
	p := c.Postgres
	dsn, err := readDSN("sink.postgres.dsn_file", p.DSNFile)
	if err != nil {
		return nil, err
	}
	db, err := sqlsink.OpenPostgres(dsn)
	if err != nil {
		// The DSN may hold a password: the error names the file only.
		return nil, fmt.Errorf("hamirror: sink.postgres: open the database of %s: %w", p.DSNFile, err)
	}
	s, err := sqlsink.New(sqlsink.Config{DB: db, Stream: p.Stream, PositionTable: p.PositionTable, RecordTable: p.RecordTable})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("%w: sink.postgres: %v", ErrConfig, err)
	}
	setupCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := s.Setup(setupCtx); err != nil {
		return nil, errors.Join(fmt.Errorf("hamirror: sink.postgres: create tables: %w", err), db.Close())
	}
	return &sinkHandle{sink: s, close: db.Close, token: func(ctx context.Context) (fence.Token, error) {
		row, _, err := s.Row(ctx)
		return row.Token, err
	}}, nil
}
