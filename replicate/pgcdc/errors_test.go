package pgcdc_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/pgcdc"
	"github.com/hakit/hakit/replicate/pgcdc/pgcdctest"
)

// TestZombieTerminated: a walsender that still holds the slot (a deposed
// member frozen with its connection open) is terminated by the next Open,
// which then streams; the zombie's cursor fails.
func TestZombieTerminated(t *testing.T) {
	t.Parallel() // each starts its own servers
	srv := sourceDB(t)
	proxy := pgcdctest.NewProxy(t, srv)
	ctx := testCtx(t, time.Minute)
	zcfg := pgcdc.Config{ConnString: proxy.DSN(srv, "cdc", "cdc-pw", "app"), Slot: "z", Publication: "pub", CreateSlot: true}
	zombie, err := newSource(t, zcfg).Open(ctx, replicate.Checkpoint{})
	if err != nil {
		t.Fatal(err)
	}
	defer zombie.Close()
	proxy.Freeze() // the zombie's process stops; its connections stay open
	defer proxy.Thaw()

	succ := newSource(t, pgcdc.Config{ConnString: cdcDSN(srv), Slot: "z", Publication: "pub", SlotWait: 20 * time.Second})
	cur, err := succ.Open(ctx, replicate.Checkpoint{})
	if err != nil {
		t.Fatalf("successor could not take the slot: %v", err)
	}
	defer cur.Close()
	execApp(t, srv, `INSERT INTO a VALUES (1, 'after the takeover')`)
	if _, chs := nextChanges(t, cur, 1); string(chs[0].New[1].Text) != "after the takeover" {
		t.Fatalf("successor read %q", chs[0].New[1].Text)
	}
	proxy.Thaw()
	zctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for {
		if _, err := zombie.Next(zctx, 10); err != nil {
			if zctx.Err() != nil {
				t.Fatal("the zombie's cursor still reads after its walsender was terminated")
			}
			break
		}
	}
}

// TestSlotBusyBound: a slot held by a walsender of a role this one may not
// terminate gives ErrSlotBusy naming the PID and the privilege needed.
func TestSlotBusyBound(t *testing.T) {
	t.Parallel() // each starts its own servers
	srv := sourceDB(t)
	srv.Exec(t, "postgres", `CREATE ROLE other LOGIN REPLICATION PASSWORD 'other-pw'`)
	srv.Exec(t, "app", `GRANT SELECT ON a, b TO other`)
	ctx := testCtx(t, time.Minute)
	holder, err := newSource(t, pgcdc.Config{ConnString: srv.DSN("other", "other-pw", "app"), Slot: "held", Publication: "pub", CreateSlot: true}).Open(ctx, replicate.Checkpoint{})
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	_, err = newSource(t, pgcdc.Config{ConnString: cdcDSN(srv), Slot: "held", Publication: "pub", SlotWait: time.Second}).Open(ctx, replicate.Checkpoint{})
	if !errors.Is(err, pgcdc.ErrSlotBusy) || !strings.Contains(err.Error(), "pg_signal_backend") || !strings.Contains(err.Error(), "PID") {
		t.Fatalf("got %v, want ErrSlotBusy naming the PID and pg_signal_backend", err)
	}
}

// TestOpenErrors: a dropped slot, a missing publication, a wrong password
// and an unsupported column type each give a clear error.
func TestOpenErrors(t *testing.T) {
	t.Parallel() // each starts its own servers
	srv := sourceDB(t)
	ctx := testCtx(t, 2*time.Minute)
	base := pgcdc.Config{ConnString: cdcDSN(srv), Slot: "e", Publication: "pub", CreateSlot: true}

	// A stream that made progress, then the slot is dropped.
	src := newSource(t, base)
	cur, err := src.Open(ctx, replicate.Checkpoint{})
	if err != nil {
		t.Fatal(err)
	}
	execApp(t, srv, `INSERT INTO a VALUES (1, 'x')`)
	recs, _ := nextChanges(t, cur, 1)
	cur.Close()
	if err := src.DropSlot(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = src.Open(ctx, replicate.Checkpoint{Pos: recs[0].Pos})
	if !errors.Is(err, pgcdc.ErrNoSlot) || !strings.Contains(err.Error(), `slot "e"`) || !strings.Contains(err.Error(), "reload") {
		t.Errorf("dropped slot: %v", err)
	}
	noCreate := base
	noCreate.CreateSlot = false
	if _, err := newSource(t, noCreate).Open(ctx, replicate.Checkpoint{}); !errors.Is(err, pgcdc.ErrNoSlot) || !strings.Contains(err.Error(), "pg_create_logical_replication_slot") {
		t.Errorf("missing slot without CreateSlot: %v", err)
	}

	noPub := base
	noPub.Publication = "nopub"
	if _, err := newSource(t, noPub).Open(ctx, replicate.Checkpoint{}); !errors.Is(err, pgcdc.ErrNoPublication) || !strings.Contains(err.Error(), `"nopub"`) {
		t.Errorf("missing publication: %v", err)
	}

	badPw := base
	badPw.ConnString = srv.DSN("cdc", "wrong-password", "app")
	_, err = newSource(t, badPw).Open(ctx, replicate.Checkpoint{})
	if err == nil || !strings.Contains(err.Error(), "password authentication failed") || !strings.Contains(err.Error(), `"cdc"`) {
		t.Errorf("wrong password: %v", err)
	}
	if err != nil && strings.Contains(err.Error(), "wrong-password") {
		t.Errorf("the error shows the password: %v", err)
	}

	// An enum column: not built in.
	srv.Exec(t, "app", `CREATE TYPE mood AS ENUM ('ok', 'sad')`, `CREATE TABLE m (id int PRIMARY KEY, feel mood)`, `ALTER TABLE m OWNER TO cdc`, `ALTER PUBLICATION pub ADD TABLE m`)
	ucfg := base
	ucfg.Slot = "u"
	cur, err = newSource(t, ucfg).Open(ctx, replicate.Checkpoint{})
	if err != nil {
		t.Fatal(err)
	}
	defer cur.Close()
	execApp(t, srv, `INSERT INTO m VALUES (1, 'ok')`)
	for {
		_, err := cur.Next(ctx, 10)
		if err == nil {
			continue
		}
		if !errors.Is(err, pgcdc.ErrUnsupportedType) || !strings.Contains(err.Error(), `public.m column "feel" has type public.mood`) {
			t.Errorf("unsupported type: %v", err)
		}
		break
	}
}

// TestSlotAhead: resuming before the slot's confirmed position (another
// consumer confirmed past it) is refused, naming both LSNs.
func TestSlotAhead(t *testing.T) {
	t.Parallel() // each starts its own servers
	srv := sourceDB(t)
	ctx := testCtx(t, time.Minute)
	src := newSource(t, pgcdc.Config{ConnString: cdcDSN(srv), Slot: "ah", Publication: "pub", CreateSlot: true, StatusInterval: 50 * time.Millisecond})
	cur, err := src.Open(ctx, replicate.Checkpoint{})
	if err != nil {
		t.Fatal(err)
	}
	execApp(t, srv, `INSERT INTO a VALUES (1, 'x')`)
	first, _ := nextChanges(t, cur, 1)
	execApp(t, srv, `INSERT INTO a VALUES (2, 'y')`)
	second, _ := nextChanges(t, cur, 1)
	cur.(replicate.Acknowledger).Acknowledge(second[0].Pos)
	p2, _ := pgcdc.DecodePos(second[0].Pos)
	waitFor(t, 10*time.Second, func() bool { return confirmedFlush(t, srv, "ah") == p2.LSN }, "the slot to confirm the second transaction")
	cur.Close()
	_, err = src.Open(ctx, replicate.Checkpoint{Pos: first[0].Pos})
	p1, _ := pgcdc.DecodePos(first[0].Pos)
	if !errors.Is(err, pgcdc.ErrSlotAhead) || !strings.Contains(err.Error(), p1.LSN.String()) || !strings.Contains(err.Error(), p2.LSN.String()) {
		t.Fatalf("got %v, want ErrSlotAhead naming %s and %s", err, p1.LSN, p2.LSN)
	}
	// Resuming at the confirmed position works and reads on.
	cur, err = src.Open(ctx, replicate.Checkpoint{Pos: second[0].Pos})
	if err != nil {
		t.Fatal(err)
	}
	defer cur.Close()
	execApp(t, srv, `INSERT INTO a VALUES (3, 'z')`)
	if _, chs := nextChanges(t, cur, 1); string(chs[0].New[0].Text) != "3" {
		t.Fatalf("after resume read id %s, want 3", chs[0].New[0].Text)
	}
}
