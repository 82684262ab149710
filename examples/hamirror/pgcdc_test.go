//go:build unix

package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hakit/hakit/replicate/pgcdc/pgcdctest"
)

// TestDaemonPostgresCDC runs three members with source.kind postgres and
// sink.kind postgres: the initial load copies a table, changes stream, the
// active member stops and a successor carries on; the target ends equal
// to the source and the heartbeat measures latency.
func TestDaemonPostgresCDC(t *testing.T) {
	srv := pgcdctest.StartN(t, 2, pgcdctest.Options{})
	src, dst := srv[0], srv[1]
	for _, s := range []*pgcdctest.Server{src, dst} {
		s.Exec(t, "postgres", `CREATE DATABASE app`, `CREATE ROLE cdc LOGIN REPLICATION PASSWORD 'cdc-pw'`)
		s.Exec(t, "app", `CREATE TABLE t (id int PRIMARY KEY, v text)`, `CREATE TABLE hakit_heartbeat (slot text PRIMARY KEY, beat timestamptz NOT NULL)`,
			`GRANT ALL ON ALL TABLES IN SCHEMA public TO cdc`, `GRANT CREATE ON SCHEMA public TO cdc`)
	}
	src.Exec(t, "app", `INSERT INTO t SELECT g, 'before' FROM generate_series(1, 1000) g`, `CREATE PUBLICATION hamirror FOR TABLE t, hakit_heartbeat`)
	dir := t.TempDir()
	write := func(name, dsn string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(dsn+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	srcDSN, dstDSN := write("source.dsn", src.DSN("cdc", "cdc-pw", "app")), write("target.dsn", dst.DSN("cdc", "cdc-pw", "app"))
	cfgs := daemonConfigs(t, 3, "raft", nil)
	for _, c := range cfgs {
		c.Source = SourceConfig{Kind: "postgres", Postgres: &PGSourceConfig{DSNFile: srcDSN, Slot: "hamirror", Publication: "hamirror",
			InitialLoad: true, HeartbeatTable: "public.hakit_heartbeat", HeartbeatInterval: Duration(100 * time.Millisecond)}}
		c.Sink = SinkConfig{Kind: "postgres", Postgres: &PostgresConfig{DSNFile: dstDSN, HeartbeatTable: "public.hakit_heartbeat"}}
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
	}
	var ds []*testDaemon
	for _, c := range cfgs {
		ds = append(ds, startDaemon(t, c))
	}
	query := func(s *pgcdctest.Server, q string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, s.DSN("cdc", "cdc-pw", "app"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(context.Background())
		var out *string
		if err := c.QueryRow(ctx, q).Scan(&out); err != nil {
			t.Fatal(err)
		}
		if out == nil {
			return ""
		}
		return *out
	}
	sum := `SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM t`
	same := func() bool { return query(src, sum) == query(dst, sum) }
	waitFor(t, "the initial load", same)
	src.Exec(t, "app", `UPDATE t SET v = 'first' WHERE id % 3 = 0`, `INSERT INTO t VALUES (5000, 'new')`)
	waitFor(t, "the first changes", same)
	first := activeOf(ds)
	if first == nil {
		t.Fatal("no member is active")
	}
	first.stop(t)
	waitFor(t, "a successor", func() bool { a := activeOf(ds); return a != nil && a != first })
	src.Exec(t, "app", `DELETE FROM t WHERE id % 7 = 0`, `UPDATE t SET v = 'second' WHERE id % 5 = 0`)
	waitFor(t, "the changes after the failover", same)
	act := activeOf(ds)
	waitFor(t, "a heartbeat", func() bool { return act.d.target.pg.Stats().Heartbeats > 0 })
	if lat := act.d.target.pg.Stats().Latency; lat <= 0 || lat > time.Minute {
		t.Errorf("heartbeat latency %v", lat)
	}
	for _, d := range ds {
		d.stop(t)
	}
}
