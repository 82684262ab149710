package pgsink_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hakit/hakit/ha"
	"github.com/hakit/hakit/lease"
	"github.com/hakit/hakit/lease/clock"
	"github.com/hakit/hakit/lease/memlease"
	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/pgcdc"
	"github.com/hakit/hakit/replicate/pgcdc/pgcdctest"
	"github.com/hakit/hakit/replicate/pgsink"
	"github.com/hakit/hakit/storage"
	"github.com/hakit/hakit/storage/memstore"
)

// The HA workload's tables: every row carries the source transaction ID
// that wrote it last; txlog has one row per transaction.
var haSchema = []string{
	`CREATE TABLE accounts (id bigint PRIMARY KEY, owner text, balance numeric(14,2), txid bigint)`,
	`CREATE TABLE items (id int PRIMARY KEY, sku text, qty int, tags text[], meta jsonb, txid bigint)`,
	`CREATE TABLE ledger (acct bigint, seq int, amount numeric, note text, txid bigint, PRIMARY KEY (acct, seq))`,
	`CREATE TABLE txlog (txid bigint PRIMARY KEY, at timestamptz)`,
	// The audit: every insert or update of a row, with the transaction
	// that made it on this server. On the target it shows which target
	// transaction applied which source transaction's rows.
	`CREATE TABLE audit (txid bigint, xact xid8, tbl text)`,
	`CREATE FUNCTION audit() RETURNS trigger LANGUAGE plpgsql AS $$
	 BEGIN INSERT INTO audit VALUES (NEW.txid, pg_current_xact_id(), TG_TABLE_NAME); RETURN NULL; END $$`,
	`CREATE TRIGGER a1 AFTER INSERT OR UPDATE ON accounts FOR EACH ROW EXECUTE FUNCTION audit()`,
	`CREATE TRIGGER a2 AFTER INSERT OR UPDATE ON items FOR EACH ROW EXECUTE FUNCTION audit()`,
	`CREATE TRIGGER a3 AFTER INSERT OR UPDATE ON ledger FOR EACH ROW EXECUTE FUNCTION audit()`,
	`CREATE TRIGGER a4 AFTER INSERT OR UPDATE ON txlog FOR EACH ROW EXECUTE FUNCTION audit()`,
}

var haTables = []struct{ name, order string }{{"accounts", "id"}, {"items", "id"}, {"ledger", "acct, seq"}, {"txlog", "txid"}}

// haPair starts source and target with the HA workload's schema.
func haPair(t testing.TB) (src, dst *pgcdctest.Server) {
	t.Helper()
	srv := pgcdctest.StartN(t, 2, pgcdctest.Options{})
	src, dst = srv[0], srv[1]
	for _, s := range []*pgcdctest.Server{src, dst} {
		s.Exec(t, "postgres", `CREATE DATABASE app`, `CREATE ROLE cdc LOGIN REPLICATION PASSWORD 'cdc-pw'`)
		s.Exec(t, "app", haSchema...)
		s.Exec(t, "app", `GRANT ALL ON ALL TABLES IN SCHEMA public TO cdc`, `GRANT CREATE ON SCHEMA public TO cdc`)
	}
	src.Exec(t, "app", `CREATE PUBLICATION pub FOR TABLE accounts, items, ledger, txlog`)
	return src, dst
}

// workload writes random transactions to the source from writers
// goroutines, each in its own key space, until stopped.
type workload struct {
	txs, rows atomic.Int64
	stop      context.CancelFunc
	wg        sync.WaitGroup
	errs      chan error
}

func startWorkload(t testing.TB, src *pgcdctest.Server, writers int, seed uint64, pace time.Duration) *workload {
	ctx, cancel := context.WithCancel(context.Background())
	w := &workload{stop: cancel, errs: make(chan error, writers)}
	for i := range writers {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			if err := w.write(ctx, dsn(src), i, writers, rand.New(rand.NewPCG(seed, uint64(i))), pace); err != nil && ctx.Err() == nil {
				w.errs <- fmt.Errorf("writer %d: %w", i, err)
			}
		}()
	}
	t.Cleanup(func() { w.finish() })
	return w
}

// finish stops the writers and returns the first error.
func (w *workload) finish() error {
	w.stop()
	w.wg.Wait()
	select {
	case err := <-w.errs:
		return err
	default:
		return nil
	}
}

func (w *workload) write(ctx context.Context, dsn string, me, of int, rnd *rand.Rand, pace time.Duration) error {
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	var accounts, items []int64 // ids that exist, in this writer's key space
	next := int64(me)
	newID := func() int64 { next += int64(of); return next }
	seq := 0
	pick := func(ids []int64) (int64, int) { i := rnd.IntN(len(ids)); return ids[i], i }
	for ctx.Err() == nil {
		tx, err := c.Begin(ctx)
		if err != nil {
			return err
		}
		stmts := 0
		exec := func(q string, args ...any) error {
			stmts++
			_, err := tx.Exec(ctx, q, args...)
			return err
		}
		err = exec(`INSERT INTO txlog VALUES (txid_current(), now())`)
		large := rnd.IntN(40) == 0
		n := 1 + rnd.IntN(6)
		for k := 0; k < n && err == nil; k++ {
			switch r := rnd.IntN(10); {
			case large && k == 0:
				seq++
				err = exec(`INSERT INTO ledger SELECT $1, g, g * 0.5, repeat('l', 50), txid_current() FROM generate_series(1, $2) g`, int64(1_000_000+me*100_000+seq), largeRows)
			case r < 3 || len(accounts) == 0:
				id := newID()
				err = exec(`INSERT INTO accounts VALUES ($1, $2, 100, txid_current())`, id, fmt.Sprintf("owner %d", id))
				accounts = append(accounts, id)
			case r < 5:
				id, _ := pick(accounts)
				err = exec(`UPDATE accounts SET balance = balance + 1.25, txid = txid_current() WHERE id = $1`, id)
			case r < 7 || len(items) == 0:
				id := newID()
				err = exec(`INSERT INTO items VALUES ($1, 'sku', 1, '{a,b}', '{"k": [1, 2]}', txid_current())`, id)
				items = append(items, id)
			case r < 8:
				id, _ := pick(items)
				err = exec(`UPDATE items SET qty = qty + 1, meta = jsonb_set(meta, '{n}', to_jsonb(qty)), txid = txid_current() WHERE id = $1`, id)
			case r < 9:
				id, i := pick(items)
				err = exec(`DELETE FROM items WHERE id = $1`, id)
				items = append(items[:i], items[i+1:]...)
			default:
				id, _ := pick(accounts)
				seq++
				err = exec(`INSERT INTO ledger VALUES ($1, $2, 1.5, 'x', txid_current())`, id, seq)
			}
		}
		if err != nil {
			_ = tx.Rollback(context.Background())
			return err
		}
		if err := tx.Commit(ctx); err != nil {
			return err
		}
		w.txs.Add(1)
		w.rows.Add(int64(stmts))
		if pace > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(pace):
			}
		}
	}
	return nil
}

// member is one ha.Node with its own connections (through proxies, so
// that they can be frozen or cut as a process's would be).
type member struct {
	id               string
	srcProxy, dstPrx *pgcdctest.Proxy
	sink             *pgsink.Sink
	source           *pgcdc.Source
	node             *ha.Node
	cancel           context.CancelFunc
	done             chan struct{}
}

type cluster struct {
	t        testing.TB
	src, dst *pgcdctest.Server
	election *memlease.Election
	store    storage.Store
	members  map[string]*member
	streams  sync.Map // member id -> *replicate.Stream of its current run
}

const haTTL = 1500 * time.Millisecond

// A large transaction of the workload has largeRows rows (and a row in
// txlog, and the other statements): more than a Stream batch of
// haMaxRecords, which must still be applied whole.
const (
	largeRows    = 600
	haMaxRecords = 250
)

func newCluster(t testing.TB, src, dst *pgcdctest.Server, ids ...string) *cluster {
	el, err := memlease.NewElection(clock.Real(), memlease.Options{TTL: haTTL})
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, src: src, dst: dst, election: el, store: memstore.New(), members: map[string]*member{}}
	for _, id := range ids {
		c.start(id)
	}
	t.Cleanup(func() {
		for _, m := range c.members {
			m.cancel()
			<-m.done
		}
	})
	return c
}

// start starts (or restarts) member id.
func (c *cluster) start(id string) {
	t := c.t
	m := c.members[id]
	if m == nil {
		m = &member{id: id, srcProxy: pgcdctest.NewProxy(t, c.src), dstPrx: pgcdctest.NewProxy(t, c.dst)}
		var err error
		m.source, err = pgcdc.New(pgcdc.Config{ConnString: m.srcProxy.DSN(c.src, "cdc", "cdc-pw", "app"), Slot: "ha", Publication: "pub", CreateSlot: true,
			StatusInterval: 200 * time.Millisecond, ProgressInterval: time.Second, SlotWait: 20 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		m.sink, err = pgsink.New(pgsink.Config{ConnString: m.dstPrx.DSN(c.dst, "cdc", "cdc-pw", "app"), Stream: "ha", IdleTxTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.sink.Setup(testCtx(t, 30*time.Second)); err != nil {
			t.Fatal(err)
		}
		c.members[id] = m
	}
	m.srcProxy.Restore()
	m.dstPrx.Restore()
	el, err := c.election.Member(id, id)
	if err != nil {
		t.Fatal(err)
	}
	work := func(ctx context.Context, term lease.Term) error {
		s := &replicate.Stream{Source: m.source, Sink: m.sink, Store: c.store, Key: "ha/cp",
			MaxRecords: haMaxRecords, CheckpointInterval: 200 * time.Millisecond, HeartbeatInterval: -1, StopTimeout: time.Second}
		c.streams.Store(id, s)
		return s.RunTerm(ctx, term)
	}
	n, err := ha.New(ha.Config{ID: id, Elector: el, Work: work, HoldOff: 200 * time.Millisecond, StopTimeout: 3 * time.Second,
		Restart: ha.RestartPolicy{Max: 100, Backoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond},
		OnEvent: func(e ha.Event) {
			if e.Kind == ha.EventWorkFailed && testing.Verbose() {
				t.Logf("member %s: work failed under token %d: %v", id, e.Token, e.Err)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.node, m.cancel, m.done = n, cancel, make(chan struct{})
	go func() {
		defer close(m.done)
		defer el.Close()
		if err := n.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			t.Logf("member %s: %v", id, err)
		}
	}()
}

// kill stops member id as a crash would: its connections are cut, it is
// cut off from the election (nothing resigns), and its goroutines end.
func (c *cluster) kill(id string) {
	m := c.members[id]
	_ = c.election.Isolate(id)
	m.srcProxy.Cut()
	m.dstPrx.Cut()
	m.cancel()
	<-m.done
	_ = c.election.Heal(id)
}

// active waits for a member other than not to be active.
func (c *cluster) active(not string, within time.Duration) string {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		for id, m := range c.members {
			if id != not && m.node != nil && m.node.Status().Role == ha.RoleActive {
				return id
			}
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}
	c.t.Fatalf("no member other than %q active within %v", not, within)
	return ""
}

// targetLSN reads the LSN of the target's stored position (0: none).
func targetLSN(ctx context.Context, c *pgx.Conn) (pgcdc.LSN, error) {
	var pos []byte
	err := c.QueryRow(ctx, `SELECT pos FROM hakit_pg_positions WHERE stream = 'ha'`).Scan(&pos)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && len(pos) == 0) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	p, err := pgcdc.DecodePos(pos)
	return p.LSN, err
}

// flushMonitor checks, until stopped, that the slot's confirmed flush
// position never passes what the target has committed: it reads the
// slot, then the target, and a slot ahead of the later target read is a
// violation. Before the target has a position, the slot must not move.
func flushMonitor(t *testing.T, src, dst *pgcdctest.Server) (stop func() (checks int, violations []string)) {
	ctx, cancel := context.WithCancel(context.Background())
	var checks int
	var bad []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc, err := pgx.Connect(ctx, src.SuperDSN())
		if err != nil {
			bad = append(bad, err.Error())
			return
		}
		defer sc.Close(context.Background())
		dc, err := pgx.Connect(ctx, dst.DSN("postgres", pgcdctest.SuperPassword, "app"))
		if err != nil {
			bad = append(bad, err.Error())
			return
		}
		defer dc.Close(context.Background())
		var first pgcdc.LSN
		for ctx.Err() == nil {
			var conf *pgcdc.LSN
			err := sc.QueryRow(ctx, `SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'ha'`).Scan(&conf)
			if err == nil && conf != nil {
				tl, terr := targetLSN(ctx, dc)
				switch {
				case terr != nil:
				case tl == 0 && first == 0:
					first = *conf
				case tl == 0 && *conf != first:
					bad = append(bad, fmt.Sprintf("slot confirmed %s with nothing in the target (created at %s)", *conf, first))
				case tl != 0 && *conf > tl:
					bad = append(bad, fmt.Sprintf("slot confirmed %s, target at %s", *conf, tl))
				default:
					checks++
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return func() (int, []string) { cancel(); <-done; return checks, bad }
}

// waitApplied waits until the target has every transaction of the source
// (txlog rows) and returns how long the last row took to appear.
func waitApplied(t *testing.T, src, dst *pgcdctest.Server) {
	t.Helper()
	want := count(t, src, `SELECT count(*) FROM txlog`)
	deadline := time.Now().Add(90 * time.Second)
	for {
		got := count(t, dst, `SELECT count(*) FROM txlog`)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("target has %d of %d transactions after 90s", got, want)
		}
		time.Sleep(50 * time.Millisecond) // polling with a deadline
	}
}

// waitProgress waits until the target's position moves past from and
// returns when it did.
func waitProgress(t testing.TB, dst *pgcdctest.Server, from pgcdc.LSN, within time.Duration) time.Time {
	t.Helper()
	ctx := testCtx(t, within)
	c, err := pgx.Connect(ctx, dst.DSN("postgres", pgcdctest.SuperPassword, "app"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	for {
		l, err := targetLSN(ctx, c)
		if err == nil && l > from {
			return time.Now()
		}
		if ctx.Err() != nil {
			t.Fatalf("the target did not move past %s within %v", from, within)
		}
		time.Sleep(5 * time.Millisecond) // polling with a deadline
	}
}

func currentTargetLSN(t testing.TB, dst *pgcdctest.Server) pgcdc.LSN {
	t.Helper()
	ctx := testCtx(t, 10*time.Second)
	c, err := pgx.Connect(ctx, dst.DSN("postgres", pgcdctest.SuperPassword, "app"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	l, err := targetLSN(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestHAFailover replicates a write load from PostgreSQL to PostgreSQL
// with three ha.Nodes while the active member is killed, frozen past its
// term and switched over. At the end the target's tables equal the
// source's, every source transaction was applied exactly once and whole
// (in one target transaction), and the slot never confirmed more than the
// target had committed.
func TestHAFailover(t *testing.T) {
	src, dst := haPair(t)
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	mon := flushMonitor(t, src, dst)
	c := newCluster(t, src, dst, "m0", "m1", "m2")
	cur := c.active("", 20*time.Second)
	waitSlot(t, src, 30*time.Second) // writes before the slot exists would not be streamed
	wl := startWorkload(t, src, 2, seed, 2*time.Millisecond)
	waitProgress(t, dst, currentTargetLSN(t, dst), 30*time.Second)

	// 1. Kill the active member.
	from := currentTargetLSN(t, dst)
	killed := time.Now()
	c.kill(cur)
	next := c.active(cur, 20*time.Second)
	gap := waitProgress(t, dst, from, 30*time.Second).Sub(killed)
	t.Logf("killed %s; %s took over; first row applied %v after the kill", cur, next, gap)
	c.start(cur)

	// 2. Freeze the active member past its term: its elector stops, its
	// connections stall with the walsender still attached to the slot.
	cur = next
	m := c.members[cur]
	const terminated = "terminating connection due to administrator command"
	holder := slotHolder(t, src, 10*time.Second) // the active member's walsender, attached
	before := strings.Count(src.Log(), terminated)
	m.srcProxy.Freeze()
	m.dstPrx.Freeze()
	if err := c.election.Pause(cur); err != nil {
		t.Fatal(err)
	}
	from = currentTargetLSN(t, dst)
	next = c.active(cur, 20*time.Second)
	waitProgress(t, dst, from, 40*time.Second) // the successor terminated the zombie's walsender
	t.Logf("froze %s; %s took over and applies", cur, next)
	if holder != 0 && strings.Count(src.Log(), terminated) == before {
		t.Errorf("the successor applied without terminating the frozen member's walsender (PID %d)", holder)
	}
	if err := c.election.Resume(cur); err != nil {
		t.Fatal(err)
	}
	m.srcProxy.Thaw()
	m.dstPrx.Thaw()

	// 3. Switch over to another member.
	cur = next
	from = currentTargetLSN(t, dst)
	if err := c.members[cur].node.Switchover(testCtx(t, 20*time.Second), ""); err != nil {
		t.Fatal(err)
	}
	next = c.active(cur, 20*time.Second)
	waitProgress(t, dst, from, 30*time.Second)
	t.Logf("switched over from %s to %s", cur, next)

	if err := wl.finish(); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, src, dst)
	checks, bad := mon()
	t.Logf("%d transactions, %d statements; %d flush checks", wl.txs.Load(), wl.rows.Load(), checks)
	for _, b := range bad {
		t.Error(b)
	}
	if checks == 0 {
		t.Error("the flush monitor checked nothing")
	}
	for _, tb := range haTables {
		if s, d := checksum(t, src, tb.name, tb.order), checksum(t, dst, tb.name, tb.order); s != d {
			t.Errorf("table %s: source %s, target %s", tb.name, s, d)
		}
	}
	checkExactlyOnce(t, src, dst)
}

// checkExactlyOnce compares the audits: for every source transaction the
// target applied the same number of row writes, all in one target
// transaction, and nothing the source did not write.
func checkExactlyOnce(t *testing.T, src, dst *pgcdctest.Server) {
	t.Helper()
	type agg struct{ n, xacts int64 }
	read := func(s *pgcdctest.Server) map[int64]agg {
		ctx := testCtx(t, time.Minute)
		c, err := pgx.Connect(ctx, dsn(s))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(context.Background())
		rows, err := c.Query(ctx, `SELECT txid, count(*), count(DISTINCT xact::text) FROM audit GROUP BY txid`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		out := map[int64]agg{}
		for rows.Next() {
			var id int64
			var a agg
			if err := rows.Scan(&id, &a.n, &a.xacts); err != nil {
				t.Fatal(err)
			}
			out[id] = a
		}
		return out
	}
	sa, da := read(src), read(dst)
	if len(sa) == 0 {
		t.Fatal("no source transactions audited")
	}
	bad := 0
	for id, s := range sa {
		d, ok := da[id]
		switch {
		case !ok:
			t.Errorf("source transaction %d (%d writes) not applied", id, s.n)
		case d.n != s.n:
			t.Errorf("source transaction %d: %d writes on the source, %d applied (twice or in part)", id, s.n, d.n)
		case d.xacts != 1:
			t.Errorf("source transaction %d applied in %d target transactions", id, d.xacts)
		default:
			continue
		}
		if bad++; bad > 10 {
			t.Fatal("too many errors")
		}
	}
	for id := range da {
		if _, ok := sa[id]; !ok {
			t.Errorf("target applied transaction %d that the source did not write", id)
		}
	}
}

// BenchmarkFailoverGap measures, under a write load, the time from the
// kill of the active member (connections cut, no resignation) to the
// first row the successor applies to the target. The lease TTL is
// haTTL; the bound is about TTL + hold-off + the successor's start
// (claim, fence the sink, open the slot).
func BenchmarkFailoverGap(b *testing.B) {
	src, dst := haPair(b)
	c := newCluster(b, src, dst, "m0", "m1", "m2")
	cur := c.active("", 20*time.Second)
	waitSlot(b, src, 30*time.Second)
	wl := startWorkload(b, src, 1, 1, 5*time.Millisecond)
	var total, takeover time.Duration
	for b.Loop() {
		waitProgress(b, dst, currentTargetLSN(b, dst), 30*time.Second)
		from := currentTargetLSN(b, dst)
		killed := time.Now()
		c.kill(cur)
		next := c.active(cur, 30*time.Second)
		active := time.Since(killed)
		gap := waitProgress(b, dst, from, 30*time.Second).Sub(killed)
		total += gap
		takeover += active
		b.Logf("killed %s: %s active after %v, first row applied after %v", cur, next, active, gap)
		c.start(cur)
		cur = next
	}
	if err := wl.finish(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms-to-first-row")
	b.ReportMetric(float64(takeover.Milliseconds())/float64(b.N), "ms-to-active")
	b.ReportMetric(haTTL.Seconds()*1000, "ttl-ms")
}

// waitSlot waits up to d for the slot to exist on the source: the
// active member creates it when it first opens the stream.
func waitSlot(t testing.TB, src *pgcdctest.Server, d time.Duration) {
	t.Helper()
	ctx := testCtx(t, d)
	c, err := pgx.Connect(ctx, src.SuperDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	for {
		var n int
		if err := c.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'ha'`).Scan(&n); err != nil {
			t.Fatalf("waiting for the slot: %v", err)
		}
		if n > 0 {
			return
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline (ctx)
	}
}

// slotHolder waits up to d for a walsender to hold the slot and returns
// its PID (0 if none did: the member was between two runs).
func slotHolder(t testing.TB, src *pgcdctest.Server, d time.Duration) int32 {
	t.Helper()
	ctx := testCtx(t, d+5*time.Second)
	c, err := pgx.Connect(ctx, src.SuperDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	deadline := time.Now().Add(d)
	for {
		var pid *int32
		if err := c.QueryRow(ctx, `SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'ha'`).Scan(&pid); err != nil {
			t.Fatal(err)
		}
		if pid != nil {
			return *pid
		}
		if time.Now().After(deadline) {
			t.Logf("no walsender held the slot within %v", d)
			return 0
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}
}
