package pgcdc_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/pgcdc"
)

// TestStreamDecodes opens a slot, makes changes of every kind and checks
// the records: operations, tables, keys, values through pgtype, whole
// transactions with increasing positions, and that the slot's confirmed
// position follows only what was acknowledged.
func TestStreamDecodes(t *testing.T) {
	t.Parallel() // each starts its own servers
	srv := sourceDB(t)
	src := newSource(t, pgcdc.Config{ConnString: cdcDSN(srv), Slot: "s1", Publication: "pub", CreateSlot: true, StatusInterval: 100 * time.Millisecond})
	ctx := testCtx(t, time.Minute)
	cur, err := src.Open(ctx, replicate.Checkpoint{})
	if err != nil {
		t.Fatal(err)
	}
	defer cur.Close()
	startFlush := confirmedFlush(t, srv, "s1")

	execApp(t, srv, `INSERT INTO a VALUES (1, 'one'), (2, NULL)`, `UPDATE a SET v = 'uno' WHERE id = 1`)
	execApp(t, srv, `INSERT INTO b VALUES (7, 12.50, '2024-05-01 10:00:00+00', '{"x": [1, 2]}', '{p,q}')`, `DELETE FROM a WHERE id = 2`, `UPDATE a SET id = 10 WHERE id = 1`)
	execApp(t, srv, `TRUNCATE b`)
	recs, chs := nextChanges(t, cur, 7)

	want := []struct {
		op    pgcdc.Op
		table string
	}{{pgcdc.OpInsert, "a"}, {pgcdc.OpInsert, "a"}, {pgcdc.OpUpdate, "a"}, {pgcdc.OpInsert, "b"}, {pgcdc.OpDelete, "a"}, {pgcdc.OpUpdate, "a"}, {pgcdc.OpTruncate, "b"}}
	for i, w := range want {
		if chs[i].Op != w.op || chs[i].Table != w.table || chs[i].Schema != "public" {
			t.Errorf("change %d: %v %s.%s, want %v public.%s", i, chs[i].Op, chs[i].Schema, chs[i].Table, w.op, w.table)
		}
	}
	for i := 1; i < len(recs); i++ {
		if pgcdc.Compare(recs[i-1].Pos, recs[i].Pos) >= 0 {
			t.Errorf("position %d %s not after %s", i, pgcdc.FormatPos(recs[i].Pos), pgcdc.FormatPos(recs[i-1].Pos))
		}
	}
	// Transactions: 3 changes, 3 changes, 1; the last of each is a resume point.
	for i, last := range []bool{false, false, true, false, false, true, true} {
		p, _ := pgcdc.DecodePos(recs[i].Pos)
		if p.Last != last {
			t.Errorf("record %d at %s: last-of-transaction %v, want %v", i, p, p.Last, last)
		}
	}
	if chs[0].XID != chs[2].XID || chs[0].XID == chs[3].XID || chs[0].CommitTime.IsZero() {
		t.Errorf("transaction IDs %d %d %d, commit time %v", chs[0].XID, chs[2].XID, chs[3].XID, chs[0].CommitTime)
	}
	// Values decoded by type.
	if v, err := chs[3].New[1].Decode(nil, chs[3].Columns[1]); err != nil || v == nil {
		t.Errorf("numeric: %v, %v", v, err)
	}
	if v, err := chs[3].New[2].Decode(nil, chs[3].Columns[2]); err != nil || !v.(time.Time).Equal(time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)) {
		t.Errorf("timestamptz: %v, %v", v, err)
	}
	if v, err := chs[3].New[4].Decode(nil, chs[3].Columns[4]); err != nil || len(v.([]any)) != 2 {
		t.Errorf("text[]: %#v, %v", v, err)
	}
	if v, _ := chs[1].New[1].Decode(nil, chs[1].Columns[1]); v != nil {
		t.Errorf("NULL decoded as %v", v)
	}
	if k := chs[5].Key(); len(k) != 1 || string(k[0].Text) != "1" || !chs[5].Columns[0].Key {
		t.Errorf("key of the update that changed the key: %+v", k)
	}
	if string(chs[5].New[0].Text) != "10" {
		t.Errorf("new key %q", chs[5].New[0].Text)
	}

	// Nothing acknowledged: the slot stays where it was.
	waitStatus(t, srv, "s1")
	if got := confirmedFlush(t, srv, "s1"); got != startFlush {
		t.Fatalf("confirmed flush moved to %s without an acknowledgement (was %s)", got, startFlush)
	}
	ack := cur.(replicate.Acknowledger)
	ack.Acknowledge(recs[2].Pos)
	p2, _ := pgcdc.DecodePos(recs[2].Pos)
	waitFor(t, 10*time.Second, func() bool { return confirmedFlush(t, srv, "s1") == p2.LSN }, "confirmed flush at the acknowledged position")
	// A position inside a transaction releases nothing.
	ack.Acknowledge(recs[3].Pos)
	waitStatus(t, srv, "s1")
	if got := confirmedFlush(t, srv, "s1"); got != p2.LSN {
		t.Fatalf("confirmed flush %s after acknowledging a position inside a transaction, want %s", got, p2.LSN)
	}
}

func waitFor(t *testing.T, d time.Duration, f func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond) // polling with a deadline
	}
}

// TestSetup creates the heartbeat table and the publication, and adds a
// table to an existing one.
func TestSetup(t *testing.T) {
	t.Parallel() // each starts its own servers
	srv := sourceDB(t)
	ctx := testCtx(t, time.Minute)
	s := newSource(t, pgcdc.Config{ConnString: cdcDSN(srv), Slot: "st", Publication: "newpub", HeartbeatTable: "public.hakit_heartbeat"})
	if err := s.Setup(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := s.Setup(ctx, "a", "public.b"); err != nil { // again, with one more table
		t.Fatal(err)
	}
	c, err := pgx.Connect(ctx, cdcDSN(srv))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var tables []string
	rows, err := c.Query(ctx, `SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = 'newpub' ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	if tables, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		t.Fatal(err)
	}
	if strings.Join(tables, ",") != "public.a,public.b,public.hakit_heartbeat" {
		t.Errorf("publication has %v", tables)
	}
	if err := s.Setup(ctx, "bad name"); err == nil || !strings.Contains(err.Error(), `"bad name"`) {
		t.Errorf("bad table name: %v", err)
	}
}
