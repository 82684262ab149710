package sqlsink_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/sqlsink"
)

// identity runs as a subtest of TestPostgres: a row's ID is made by the
// first Bind and kept; a row bound to one stream refuses another unless
// moved on purpose; Bind is fenced; and a position table created by an
// earlier release gains the identity columns in Setup.
func identity(t *testing.T, db *sql.DB) {
	ctx := context.Background()
	s := newSink(t, db, "ident")
	if id, err := s.Identity(ctx); err != nil || id != (replicate.SinkIdentity{}) {
		t.Fatalf("identity before any row: %+v, %v", id, err)
	}
	id, err := s.Bind(ctx, 3, "", "orders/cp")
	if err != nil || id.ID == "" || id.Stream != "orders/cp" {
		t.Fatalf("first Bind: %+v, %v", id, err)
	}
	if again, err := s.Bind(ctx, 3, "", "orders/cp"); err != nil || again != id {
		t.Fatalf("Bind again: %+v, %v; want %+v", again, err, id)
	}
	if _, err := s.Bind(ctx, 4, "", "other/cp"); !errors.Is(err, replicate.ErrIdentity) {
		t.Fatalf("Bind to another stream: %v, want ErrIdentity", err)
	}
	if _, err := s.Bind(ctx, 2, "", "orders/cp"); !errors.Is(err, fence.ErrStale) {
		t.Fatalf("Bind under a stale token: %v, want fence.ErrStale", err)
	}
	moved, err := s.Bind(ctx, 5, "orders/cp", "other/cp")
	if err != nil || moved.ID != id.ID || moved.Stream != "other/cp" {
		t.Fatalf("moving the target on purpose: %+v, %v", moved, err)
	}
	if got, _ := s.Identity(ctx); got != moved {
		t.Fatalf("Identity = %+v, want %+v", got, moved)
	}

	// A table from before identities: no sink_id or stream_key column,
	// and a row with a position. Setup adds the columns; Bind gives the
	// row an ID and keeps its position.
	if _, err := db.ExecContext(ctx, `CREATE TABLE old_positions (stream text PRIMARY KEY, token bigint NOT NULL, pos bytea,
		heartbeat_at timestamptz, heartbeat_pos bytea, updated_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO old_positions (stream, token, pos) VALUES ('legacy', 7, '\x0102')`); err != nil {
		t.Fatal(err)
	}
	old, err := sqlsink.New(sqlsink.Config{DB: db, Stream: "legacy", PositionTable: "old_positions"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.Identity(ctx); err == nil {
		t.Fatal("Identity on a table without the identity columns succeeded before Setup")
	}
	if err := old.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	if id, err := old.Identity(ctx); err != nil || id != (replicate.SinkIdentity{}) {
		t.Fatalf("identity of a legacy row: %+v, %v", id, err)
	}
	lid, err := old.Bind(ctx, 7, "", "legacy/cp")
	if err != nil || lid.ID == "" {
		t.Fatalf("Bind of a legacy row: %+v, %v", lid, err)
	}
	if p, err := old.Position(ctx); err != nil || string(p) != "\x01\x02" {
		t.Fatalf("position after Bind: %x, %v", p, err)
	}
}
