package pgsink_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/pgcdc"
	"github.com/hakit/hakit/replicate/pgcdc/pgcdctest"
	"github.com/hakit/hakit/replicate/pgsink"
	"github.com/hakit/hakit/storage"
	"github.com/hakit/hakit/storage/memstore"
)

// TestIdentity: the position row's ID is made when the row is created
// (by Bind, or by the first Apply of a stream never bound) and kept; a
// row bound to one stream refuses another unless moved on purpose; Bind
// is fenced; each stream's row in one table is a target of its own.
func TestIdentity(t *testing.T) {
	t.Parallel() // each starts its own servers
	dst := target(t)
	ctx := testCtx(t, time.Minute)
	newSink := func(stream string) *pgsink.Sink {
		s, err := pgsink.New(pgsink.Config{ConnString: dsn(dst), Stream: stream})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		if err := s.Setup(ctx); err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := newSink("orders")
	if id, err := s.Identity(ctx); err != nil || id != (replicate.SinkIdentity{}) {
		t.Fatalf("identity before any row: %+v, %v", id, err)
	}
	id, err := s.Bind(ctx, 3, "", "orders/cp")
	if err != nil || len(id.ID) != 32 || id.Stream != "orders/cp" {
		t.Fatalf("first Bind: %+v, %v", id, err)
	}
	if again, err := s.Bind(ctx, 3, "", "orders/cp"); err != nil || again != id {
		t.Fatalf("Bind again: %+v, %v; want %+v", again, err, id)
	}
	_, err = s.Bind(ctx, 4, "", "other/cp")
	if !errors.Is(err, replicate.ErrIdentity) || !strings.Contains(err.Error(), `"orders/cp"`) || !strings.Contains(err.Error(), id.ID) {
		t.Fatalf("Bind to another stream: %v, want ErrIdentity naming the stream and the sink", err)
	}
	if _, err := s.Bind(ctx, 2, "", "orders/cp"); !errors.Is(err, fence.ErrStale) {
		t.Fatalf("Bind under a stale token: %v, want fence.ErrStale", err)
	}
	// Bind admits its token as an Apply does.
	if err := s.Apply(ctx, 3, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(ctx, 2, nil); !errors.Is(err, fence.ErrStale) {
		t.Fatalf("Apply under a token below Bind's: %v, want fence.ErrStale", err)
	}
	moved, err := s.Bind(ctx, 5, "orders/cp", "other/cp")
	if err != nil || moved.ID != id.ID || moved.Stream != "other/cp" {
		t.Fatalf("moving the target on purpose: %+v, %v", moved, err)
	}
	if got, err := s.Identity(ctx); err != nil || got != moved {
		t.Fatalf("Identity = %+v, %v; want %+v", got, err, moved)
	}

	// A stream that was never bound gets its ID with the row its first
	// Apply creates, and Bind keeps it.
	u := newSink("unbound")
	if err := u.Apply(ctx, 1, nil); err != nil {
		t.Fatal(err)
	}
	uid, err := u.Identity(ctx)
	if err != nil || len(uid.ID) != 32 || uid.Stream != "" || uid.ID == id.ID {
		t.Fatalf("identity of a row made by Apply: %+v, %v (the other row's ID is %s)", uid, err, id.ID)
	}
	if b, err := u.Bind(ctx, 1, "", "unbound/cp"); err != nil || b.ID != uid.ID {
		t.Fatalf("Bind of a row made by Apply: %+v, %v; want ID %s", b, err, uid.ID)
	}
}

// noAcks hides pgcdc's Acknowledger from the Stream: the member it stands
// for applied and checkpointed, but no status update of it reached the
// source server (it was killed first), so the slot stayed where it was.
type noAcks struct{ *pgcdc.Source }

func (s noAcks) Open(ctx context.Context, from replicate.Checkpoint) (replicate.Cursor, error) {
	c, err := s.Source.Open(ctx, from)
	if err != nil {
		return nil, err
	}
	return atomicOnly{c}, nil
}

type atomicOnly struct{ replicate.Cursor }

func (atomicOnly) AtomicChunks() bool { return true }

// backupTarget copies the target's database app, position table
// included, as a backup would; restoreTarget puts a copy back in its
// place. No session may be connected to app meanwhile.
func backupTarget(t *testing.T, dst *pgcdctest.Server, name string) {
	t.Helper()
	dst.Exec(t, "postgres", `CREATE DATABASE `+name+` TEMPLATE app`)
}

func restoreTarget(t *testing.T, dst *pgcdctest.Server, name string) {
	t.Helper()
	dst.Exec(t, "postgres", `DROP DATABASE app WITH (FORCE)`, `CREATE DATABASE app TEMPLATE `+name)
}

// confirmedFlush reads slot s's confirmed position on the source.
func confirmedFlush(t *testing.T, src *pgcdctest.Server) pgcdc.LSN {
	t.Helper()
	ctx := testCtx(t, 30*time.Second)
	c, err := pgx.Connect(ctx, src.SuperDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var lsn pgcdc.LSN
	if err := c.QueryRow(ctx, `SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 's'`).Scan(&lsn); err != nil {
		t.Fatal(err)
	}
	return lsn
}

// sinkLSN is the LSN of the sink's position.
func sinkLSN(t *testing.T, s *pgsink.Sink) pgcdc.LSN {
	t.Helper()
	pos, err := s.Position(testCtx(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	p, err := pgcdc.DecodePos(pos)
	if err != nil {
		t.Fatal(err)
	}
	return p.LSN
}

// storedSink returns the sink ID the checkpoint under "cp" names.
func storedSink(t *testing.T, store storage.Store) string {
	t.Helper()
	cp, _, err := replicate.LoadCheckpoint(testCtx(t, 10*time.Second), store, "cp")
	if err != nil {
		t.Fatal(err)
	}
	return cp.Sink
}

// TestRestoredTarget: a target restored from a backup keeps its identity
// and stands behind the checkpoint. While the slot has not confirmed past
// the backup's position (the member that went further was killed before
// its status update reached the source), the changes in between are read
// again and the target ends equal to the source. Once the slot has
// confirmed past it, the changes in between are gone from the source: the
// Stream refuses with ErrGap (the slot being ahead, ErrSlotAhead) naming
// both positions, and applies nothing — never a silent hole.
func TestRestoredTarget(t *testing.T) {
	t.Parallel() // each starts its own servers
	src, dst := pair(t)
	store := memstore.New()
	pipe := func(hideAcks bool) *pipeline {
		p := newPipeline(t, src, dst, func(c *pgcdc.Config, k *pgsink.Config) { c.ProgressInterval = 200 * time.Millisecond })
		p.stream.Store = store
		if hideAcks {
			p.stream.Source = noAcks{p.src}
		}
		return p
	}
	// runLoad starts a pipeline, commits load on the source, waits until
	// the target has it, stops, and closes the sink's session (a backup
	// or restore needs the database to itself).
	runLoad := func(p *pipeline, tok fence.Token, load ...string) {
		t.Helper()
		p.start(t, tok)
		exec(t, src, load...)
		p.waitCaughtUp(t, src)
		if err := p.stop(); err != nil {
			t.Fatal(err)
		}
	}
	tables := []struct{ name, order string }{{"a", "id"}, {"b", "k1, k2"}, {"full_ident", "x, y"}}
	same := func(when string) {
		t.Helper()
		for _, tb := range tables {
			if s, d := checksum(t, src, tb.name, tb.order), checksum(t, dst, tb.name, tb.order); s != d {
				t.Errorf("%s: table %s: source %s, target %s", when, tb.name, s, d)
			}
		}
	}

	p1 := pipe(false)
	runLoad(p1, 1, `INSERT INTO a SELECT g, 'v' || g FROM generate_series(1, 100) g`, `INSERT INTO full_ident VALUES (1, 'p')`)
	backupAt := sinkLSN(t, p1.sink)
	id1, err := p1.sink.Identity(testCtx(t, 10*time.Second))
	if err != nil || id1.ID == "" || id1.Stream != "cp" {
		t.Fatalf("identity after the first run: %+v, %v", id1, err)
	}
	p1.sink.Close()
	backupTarget(t, dst, "backup1")

	// A member that applies more and dies before telling the slot.
	p2 := pipe(true)
	runLoad(p2, 2, `UPDATE a SET v = 'second' WHERE id <= 50`, `DELETE FROM a WHERE id > 90`,
		`INSERT INTO b VALUES (1, 'x', 1.5, now(), '{}', '{t}', '\x01')`, `UPDATE full_ident SET y = 'q'`)
	cpBefore, _, err := replicate.LoadCheckpoint(testCtx(t, 10*time.Second), store, "cp")
	if err != nil {
		t.Fatal(err)
	}
	if lsn := confirmedFlush(t, src); lsn > backupAt {
		t.Fatalf("test premise: the slot confirmed %s, past the backup at %s, though no acknowledgement was sent", lsn, backupAt)
	}
	p2.sink.Close()
	restoreTarget(t, dst, "backup1")

	p3 := pipe(false)
	if id, err := p3.sink.Identity(testCtx(t, 10*time.Second)); err != nil || id != id1 {
		t.Fatalf("identity of the restored target: %+v, %v; want %+v", id, err, id1)
	}
	runLoad(p3, 3, `INSERT INTO a VALUES (500, 'third')`)
	same("after the replay")
	if st := p3.stream.Stats(); st.Records == 0 {
		t.Errorf("stats after the replay: %+v", st)
	}
	if cp, _, _ := replicate.LoadCheckpoint(testCtx(t, 10*time.Second), store, "cp"); pgcdc.Compare(cp.Pos, cpBefore.Pos) <= 0 || cp.Sink != id1.ID {
		t.Errorf("checkpoint %s of sink %s after the replay; before it %s", pgcdc.FormatPos(cp.Pos), cp.Sink, pgcdc.FormatPos(cpBefore.Pos))
	}

	// Now the slot hears of everything: a backup from before that is
	// behind the slot.
	backupAt = sinkLSN(t, p3.sink)
	p3.sink.Close()
	backupTarget(t, dst, "backup2")
	p4 := pipe(false)
	p4.start(t, 4)
	exec(t, src, `UPDATE a SET v = 'fourth' WHERE id = 1`, `INSERT INTO a VALUES (501, 'fourth')`)
	p4.waitCaughtUp(t, src)
	reached := sinkLSN(t, p4.sink)
	deadline := time.Now().Add(30 * time.Second)
	for confirmedFlush(t, src) < reached {
		if time.Now().After(deadline) {
			t.Fatalf("the slot did not confirm %s within 30s (at %s)", reached, confirmedFlush(t, src))
		}
		time.Sleep(50 * time.Millisecond) // polling with a deadline
	}
	if err := p4.stop(); err != nil {
		t.Fatal(err)
	}
	p4.sink.Close()
	restoreTarget(t, dst, "backup2")
	confirmed := confirmedFlush(t, src)
	before := checksum(t, dst, "a", "id")

	p5 := pipe(false)
	err = p5.stream.Run(testCtx(t, time.Minute), 5)
	if !errors.Is(err, replicate.ErrGap) || !errors.Is(err, pgcdc.ErrSlotAhead) {
		t.Fatalf("Run on a target restored behind the slot: %v, want ErrGap and ErrSlotAhead", err)
	}
	t.Logf("refused: %v", err)
	for _, want := range []string{confirmed.String(), backupAt.String()} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not name %s: %v", want, err)
		}
	}
	if after := checksum(t, dst, "a", "id"); after != before {
		t.Errorf("the refused Run changed the target: table a %s, was %s", after, before)
	}
	if got := sinkLSN(t, p5.sink); got != backupAt {
		t.Errorf("the refused Run moved the sink to %s from %s", got, backupAt)
	}
	if got := storedSink(t, store); got != id1.ID {
		t.Errorf("checkpoint names sink %s, want %s", got, id1.ID)
	}
}

// TestIdentityRefused: a checkpoint key reused for another target, and a
// second stream pointed at a target that belongs to the first, are
// refused with ErrIdentity before anything is applied; RebuildCheckpoint
// with an initial load points the key at the new target on purpose.
func TestIdentityRefused(t *testing.T) {
	t.Parallel() // each starts its own servers
	src, dst := pair(t)
	dst.Exec(t, "postgres", `CREATE DATABASE app2`)
	dst.Exec(t, "app2", schema...)
	dst.Exec(t, "app2", `GRANT ALL ON ALL TABLES IN SCHEMA public TO cdc`, `GRANT CREATE ON SCHEMA public TO cdc`)
	p := newPipeline(t, src, dst, func(c *pgcdc.Config, k *pgsink.Config) { c.ProgressInterval = 200 * time.Millisecond })
	p.start(t, 1)
	exec(t, src, `INSERT INTO a SELECT g, 'v' || g FROM generate_series(1, 100) g`)
	p.waitCaughtUp(t, src)
	if err := p.stop(); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t, 2*time.Minute)
	id1, err := p.sink.Identity(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// The same key, another target (a new database).
	other, err := pgsink.New(pgsink.Config{ConnString: dst.DSN("cdc", "cdc-pw", "app2"), Stream: "s"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	newSource := func(mut func(*pgcdc.Config)) *pgcdc.Source {
		c := pgcdc.Config{ConnString: dsn(src), Slot: "s", Publication: "pub"}
		if mut != nil {
			mut(&c)
		}
		s, err := pgcdc.New(c)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	reused := &replicate.Stream{Source: newSource(nil), Sink: other, Store: p.stream.Store, Key: "cp", HeartbeatInterval: -1}
	err = reused.Run(ctx, 2)
	if !errors.Is(err, replicate.ErrIdentity) || !strings.Contains(err.Error(), id1.ID) {
		t.Fatalf("Run with the key of another target: %v, want ErrIdentity naming sink %s", err, id1.ID)
	}
	t.Logf("refused: %v", err)
	if n := count(t, dst, `SELECT count(*) FROM hakit_pg_positions`); n != 1 {
		t.Errorf("the first target has %d position rows", n)
	}
	if row, ok, err := other.Row(ctx); err != nil || ok {
		t.Errorf("the refused Run wrote a position row in the new target: %+v, %v", row, err)
	}

	// Another stream (its own key and store) pointed at the first target.
	second := &replicate.Stream{Source: newSource(nil), Sink: p.sink, Store: memstore.New(), Key: "second/cp", HeartbeatInterval: -1}
	err = second.Run(ctx, 3)
	if !errors.Is(err, replicate.ErrIdentity) || !strings.Contains(err.Error(), `"cp"`) {
		t.Fatalf("a second stream on the target: %v, want ErrIdentity naming stream \"cp\"", err)
	}
	t.Logf("refused: %v", err)
	if row, _, err := p.sink.Row(ctx); err != nil || row.Token != 1 {
		t.Errorf("the refused stream touched the target: token %d, %v", row.Token, err)
	}

	// On purpose: the key now delivers to the new target, loaded from a
	// snapshot consistent with a new slot.
	if _, err := replicate.RebuildCheckpoint(ctx, p.stream.Store, "cp", 4, other, pgcdc.Compare, time.Now()); err != nil {
		t.Fatal(err)
	}
	moved := &replicate.Stream{Source: newSource(func(c *pgcdc.Config) { c.InitialLoad, c.ProgressInterval = true, 200*time.Millisecond }),
		Sink: other, Store: p.stream.Store, Key: "cp", HeartbeatInterval: -1}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- moved.Run(rctx, 4) }()
	exec(t, src, `INSERT INTO a VALUES (1000, 'after the move')`)
	deadline := time.Now().Add(time.Minute)
	for countIn(t, dst, "app2", `SELECT count(*) FROM a`) != 101 {
		select {
		case err := <-done:
			t.Fatalf("the re-pointed stream stopped: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the new target did not get the source's rows within a minute")
		}
		time.Sleep(50 * time.Millisecond) // polling with a deadline
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
