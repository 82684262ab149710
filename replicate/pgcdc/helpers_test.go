package pgcdc_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/pgcdc"
	"github.com/hakit/hakit/replicate/pgcdc/pgcdctest"
)

// testCtx is a context that ends with the test, or after d.
func testCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// sourceDB starts a source server with database "app", a replication
// role "cdc" and tables a (id int primary key, v text) and b.
func sourceDB(t *testing.T) *pgcdctest.Server {
	t.Helper()
	srv := pgcdctest.Start(t, pgcdctest.Options{})
	srv.Exec(t, "postgres", `CREATE DATABASE app`, `CREATE ROLE cdc LOGIN REPLICATION PASSWORD 'cdc-pw'`)
	srv.Exec(t, "app",
		`CREATE TABLE a (id int PRIMARY KEY, v text)`,
		`CREATE TABLE b (k bigint PRIMARY KEY, n numeric(12,2), at timestamptz, data jsonb, tags text[])`,
		`ALTER TABLE a OWNER TO cdc`, `ALTER TABLE b OWNER TO cdc`,
		`GRANT CREATE ON DATABASE app TO cdc`, `GRANT CREATE ON SCHEMA public TO cdc`,
		`CREATE PUBLICATION pub FOR TABLE a, b`)
	return srv
}

func cdcDSN(srv *pgcdctest.Server) string { return srv.DSN("cdc", "cdc-pw", "app") }

func newSource(t *testing.T, cfg pgcdc.Config) *pgcdc.Source {
	t.Helper()
	s, err := pgcdc.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// execApp runs statements as cdc on app, in one transaction.
func execApp(t *testing.T, srv *pgcdctest.Server, stmts ...string) {
	t.Helper()
	ctx := testCtx(t, 30*time.Second)
	c, err := pgx.Connect(ctx, cdcDSN(srv))
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

// nextChanges reads from cur until it has n records or the context ends.
func nextChanges(t *testing.T, cur replicate.Cursor, n int) ([]replicate.Record, []*pgcdc.Change) {
	t.Helper()
	ctx := testCtx(t, 30*time.Second)
	var recs []replicate.Record
	var chs []*pgcdc.Change
	for len(recs) < n {
		got, err := cur.Next(ctx, 1000)
		if err != nil {
			t.Fatalf("Next after %d of %d records: %v", len(recs), n, err)
		}
		for _, r := range got {
			c, err := pgcdc.DecodeChange(r.Data)
			if err != nil {
				t.Fatal(err)
			}
			if c.Op == pgcdc.OpProgress {
				continue
			}
			recs, chs = append(recs, r), append(chs, c)
		}
	}
	return recs, chs
}

// confirmedFlush reads the slot's confirmed flush LSN.
func confirmedFlush(t *testing.T, srv *pgcdctest.Server, slot string) pgcdc.LSN {
	t.Helper()
	ctx := testCtx(t, 10*time.Second)
	c, err := pgx.Connect(ctx, srv.DSN("postgres", pgcdctest.SuperPassword, "app"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var lsn pgcdc.LSN
	if err := c.QueryRow(ctx, `SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&lsn); err != nil {
		t.Fatal(err)
	}
	return lsn
}

// waitStatus waits until the server has received a status update from
// the slot's walsender after now, so that a check of the slot's
// confirmed position afterwards sees every update sent before.
func waitStatus(t *testing.T, srv *pgcdctest.Server, slot string) {
	t.Helper()
	ctx := testCtx(t, 10*time.Second)
	c, err := pgx.Connect(ctx, srv.DSN("postgres", pgcdctest.SuperPassword, "app"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var since time.Time
	if err := c.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&since); err != nil {
		t.Fatal(err)
	}
	for {
		var n int
		err := c.QueryRow(ctx, `SELECT count(*) FROM pg_stat_replication r JOIN pg_replication_slots s ON s.active_pid = r.pid
			WHERE s.slot_name = $1 AND r.reply_time > $2`, slot, since).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		time.Sleep(20 * time.Millisecond) // polling with a deadline (ctx)
	}
}
