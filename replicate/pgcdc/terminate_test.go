package pgcdc

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/hakit/hakit/replicate/pgcdc/pgcdctest"
)

// The slot's holder is read, then terminated: if its PID went to another
// session in between (it exited, the number was reused), that session
// must live. Here the slot has no holder at all and the PID is an
// ordinary session's.
func TestTerminateOnlyTheHolder(t *testing.T) {
	t.Parallel() // starts its own server
	srv := pgcdctest.Start(t, pgcdctest.Options{})
	ctx := testContext(t)
	admin, err := pgx.Connect(ctx, srv.SuperDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(ctx, `SELECT pg_create_logical_replication_slot('held', 'pgoutput')`); err != nil {
		t.Fatal(err)
	}
	bystander, err := pgx.Connect(ctx, srv.SuperDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer bystander.Close(context.Background())
	var pid int32
	if err := bystander.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{ConnString: srv.SuperDSN(), Slot: "held", Publication: "p"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.terminateHolder(ctx, admin, pid); err != nil {
		t.Fatal(err)
	}
	if err := bystander.Ping(ctx); err != nil {
		t.Fatalf("a session whose PID was taken for the slot's holder was terminated: %v", err)
	}
}
