package pgsink_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/pgcdc"
	"github.com/hakit/hakit/replicate/pgcdc/pgcdctest"
	"github.com/hakit/hakit/replicate/pgsink"
	"github.com/hakit/hakit/storage/memstore"
)

func testCtx(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// schema is the mirrored tables, created on source and target alike.
var schema = []string{
	`CREATE TABLE a (id int PRIMARY KEY, v text)`,
	`CREATE TABLE b (k1 bigint, k2 text, n numeric(12,2), at timestamptz, data jsonb, tags text[], blob bytea, PRIMARY KEY (k1, k2))`,
	`CREATE TABLE full_ident (x int, y text)`,
	`ALTER TABLE full_ident REPLICA IDENTITY FULL`,
}

// pair starts a source (database app, publication pub of a, b and
// full_ident, role cdc) and a target (database app, the same tables).
func pair(t testing.TB) (src, dst *pgcdctest.Server) {
	t.Helper()
	srv := pgcdctest.StartN(t, 2, pgcdctest.Options{})
	src, dst = srv[0], srv[1]
	for _, s := range srv {
		mirrored(t, s)
	}
	src.Exec(t, "app", `CREATE PUBLICATION pub FOR TABLE a, b, full_ident`)
	return src, dst
}

// target starts a target alone, for tests that feed the sink by hand.
func target(t testing.TB) *pgcdctest.Server {
	t.Helper()
	s := pgcdctest.Start(t, pgcdctest.Options{})
	mirrored(t, s)
	return s
}

// mirrored creates database app, role cdc and the tables on s.
func mirrored(t testing.TB, s *pgcdctest.Server) {
	t.Helper()
	s.Exec(t, "postgres", `CREATE DATABASE app`, `CREATE ROLE cdc LOGIN REPLICATION PASSWORD 'cdc-pw'`)
	s.Exec(t, "app", schema...)
	s.Exec(t, "app", `GRANT ALL ON ALL TABLES IN SCHEMA public TO cdc`, `GRANT CREATE ON SCHEMA public TO cdc`)
}

func dsn(s *pgcdctest.Server) string { return s.DSN("cdc", "cdc-pw", "app") }

func exec(t testing.TB, s *pgcdctest.Server, stmts ...string) {
	t.Helper()
	ctx := testCtx(t, 60*time.Second)
	c, err := pgx.Connect(ctx, dsn(s))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range stmts {
		if _, err := tx.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

// checksum returns a digest of a table's rows in key order.
func checksum(t testing.TB, s *pgcdctest.Server, table, order string) string {
	t.Helper()
	ctx := testCtx(t, 60*time.Second)
	c, err := pgx.Connect(ctx, dsn(s))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var sum *string
	var n int
	if err := c.QueryRow(ctx, `SELECT md5(string_agg(t::text, '|' ORDER BY `+order+`)), count(*) FROM `+table+` t`).Scan(&sum, &n); err != nil {
		t.Fatal(err)
	}
	if sum == nil {
		return "empty"
	}
	return *sum
}

// pipeline is a Stream from src to a pgsink on dst, run by hand.
type pipeline struct {
	src    *pgcdc.Source
	sink   *pgsink.Sink
	stream *replicate.Stream
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

func newPipeline(t testing.TB, src, dst *pgcdctest.Server, mut func(*pgcdc.Config, *pgsink.Config)) *pipeline {
	t.Helper()
	scfg := pgcdc.Config{ConnString: dsn(src), Slot: "s", Publication: "pub", CreateSlot: true, StatusInterval: 100 * time.Millisecond}
	kcfg := pgsink.Config{ConnString: dsn(dst), Stream: "s"}
	if mut != nil {
		mut(&scfg, &kcfg)
	}
	source, err := pgcdc.New(scfg)
	if err != nil {
		t.Fatal(err)
	}
	sink, err := pgsink.New(kcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	if err := sink.Setup(testCtx(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	return &pipeline{src: source, sink: sink, stream: &replicate.Stream{Source: source, Sink: sink, Store: memstore.New(), Key: "cp", HeartbeatInterval: -1}}
}

func (p *pipeline) start(t testing.TB, tok fence.Token) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel, p.done, p.once = cancel, make(chan error, 1), sync.Once{}
	resumes := p.stream.Stats().Resumes
	go func() { p.done <- p.stream.Run(ctx, tok) }()
	t.Cleanup(func() { _ = p.stop() })
	// Changes committed before the slot exists would not be streamed.
	deadline := time.Now().Add(30 * time.Second)
	for p.stream.Stats().Resumes == resumes {
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("pipeline stopped before it opened: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("pipeline did not open within 30s")
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}
}

func (p *pipeline) stop() error {
	p.once.Do(func() { p.cancel(); p.err = <-p.done })
	return p.err
}

// waitCaughtUp waits until the sink has applied everything committed on
// src so far (its position reaches the source's current WAL position,
// through a progress record if need be) or the pipeline fails.
func (p *pipeline) waitCaughtUp(t testing.TB, src *pgcdctest.Server) {
	t.Helper()
	ctx := testCtx(t, 60*time.Second)
	c, err := pgx.Connect(ctx, dsn(src))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var target pgcdc.LSN
	if err := c.QueryRow(ctx, `SELECT pg_current_wal_lsn()`).Scan(&target); err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("pipeline stopped: %v", err)
		default:
		}
		pos, err := p.sink.Position(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if pp, _ := pgcdc.DecodePos(pos); pp.LSN >= target {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("sink at %s, waiting for %s", pgcdc.FormatPos(pos), target)
		}
		time.Sleep(20 * time.Millisecond) // polling with a deadline
	}
}

// count runs a query returning one integer on s's app database.
func count(t testing.TB, s *pgcdctest.Server, q string) int64 {
	t.Helper()
	return countIn(t, s, "app", q)
}

// countIn runs a query returning one integer on s's database db.
func countIn(t testing.TB, s *pgcdctest.Server, db, q string) int64 {
	t.Helper()
	ctx := testCtx(t, 30*time.Second)
	c, err := pgx.Connect(ctx, s.DSN("cdc", "cdc-pw", db))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var n int64
	if err := c.QueryRow(ctx, q).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}
