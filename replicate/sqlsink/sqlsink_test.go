package sqlsink_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/memrepl"
	"github.com/hakit/hakit/replicate/sqlsink"
	"github.com/hakit/hakit/storage/memstore"
)

func newSink(t *testing.T, db *sql.DB, stream string) *sqlsink.Sink {
	t.Helper()
	s, err := sqlsink.New(sqlsink.Config{DB: db, Stream: stream})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Setup(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

func batch(from, n int) []replicate.Record {
	var out []replicate.Record
	for i := from; i < from+n; i++ {
		out = append(out, replicate.Record{Pos: memrepl.Pos(uint64(i + 1)), Data: []byte(fmt.Sprintf("r%d", i))})
	}
	return out
}

func dataOf(recs []replicate.Record) [][]byte {
	var out [][]byte
	for _, r := range recs {
		out = append(out, r.Data)
	}
	return out
}

func TestConfig(t *testing.T) {
	db := &sql.DB{}
	for _, cfg := range []sqlsink.Config{
		{Stream: "s"},
		{DB: db},
		{DB: db, Stream: "s", PositionTable: "x; DROP TABLE y"},
		{DB: db, Stream: "s", RecordTable: "a.b.c"},
	} {
		if _, err := sqlsink.New(cfg); !errors.Is(err, sqlsink.ErrConfig) || !strings.HasPrefix(err.Error(), "sqlsink: invalid config: ") {
			t.Errorf("New(%+v) = %v, want ErrConfig", cfg, err)
		}
	}
	_, err := sqlsink.New(sqlsink.Config{PositionTable: "x y"})
	for _, field := range []string{"DB", "Stream", "PositionTable"} {
		if err == nil || !strings.Contains(err.Error(), "sqlsink: invalid config: "+field+": ") {
			t.Errorf("New with three broken fields: %v; want it to name %s", err, field)
		}
	}
}

// One PostgreSQL server for all the subtests; each uses its own stream.
func TestPostgres(t *testing.T) {
	db := startPostgres(t)
	ctx := context.Background()

	t.Run("apply, position and heartbeat", func(t *testing.T) {
		s := newSink(t, db, "basic")
		if p, err := s.Position(ctx); err != nil || p != nil {
			t.Fatalf("fresh position %x, %v", p, err)
		}
		all := batch(0, 2500) // more than one multi-row insert
		if err := s.Apply(ctx, 4, all[:1200]); err != nil {
			t.Fatal(err)
		}
		if err := s.Apply(ctx, 4, all[1200:]); err != nil {
			t.Fatal(err)
		}
		if p, err := s.Position(ctx); err != nil || !bytes.Equal(p, all[2499].Pos) {
			t.Fatalf("position %x, %v", p, err)
		}
		hb := replicate.Heartbeat{Pos: all[2499].Pos, Time: time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)}
		if err := s.ApplyHeartbeat(ctx, 5, hb); err != nil {
			t.Fatal(err)
		}
		row, ok, err := s.Row(ctx)
		if err != nil || !ok || row.Token != 5 || !row.HeartbeatAt.Equal(hb.Time) || !bytes.Equal(row.HeartbeatPos, hb.Pos) {
			t.Fatalf("row %+v, %v, %v", row, ok, err)
		}
		if got := records(t, db, "basic"); !equalData(got, dataOf(all)) {
			t.Fatalf("table has %d records, want %d in order", len(got), len(all))
		}
	})

	t.Run("heartbeat creates the row", func(t *testing.T) {
		s := newSink(t, db, "hb-first")
		if err := s.ApplyHeartbeat(ctx, 1, replicate.Heartbeat{Time: time.Unix(1, 0)}); err != nil {
			t.Fatal(err)
		}
		if p, err := s.Position(ctx); err != nil || p != nil {
			t.Fatalf("position after a heartbeat only: %x, %v", p, err)
		}
	})

	t.Run("stale token writes nothing", func(t *testing.T) {
		old, cur := newSink(t, db, "fenced"), newSink(t, db, "fenced")
		if err := old.Apply(ctx, 1, batch(0, 3)); err != nil {
			t.Fatal(err)
		}
		if err := cur.Apply(ctx, 2, batch(3, 3)); err != nil {
			t.Fatal(err)
		}
		err := old.Apply(ctx, 1, batch(6, 3))
		var se *fence.StaleError
		if !errors.Is(err, fence.ErrStale) || !errors.As(err, &se) || se.Token != 1 || se.High != 2 {
			t.Fatalf("stale Apply = %v", err)
		}
		if err := old.ApplyHeartbeat(ctx, 1, replicate.Heartbeat{}); !errors.Is(err, fence.ErrStale) {
			t.Fatalf("stale heartbeat = %v", err)
		}
		if got := records(t, db, "fenced"); !equalData(got, dataOf(batch(0, 6))) {
			t.Fatalf("table has %q", got)
		}
	})

	t.Run("empty apply fences", func(t *testing.T) {
		// A Stream applies an empty batch before it reads the position,
		// so that a deposed member's batch in flight cannot land after
		// the read: the empty Apply must admit its token, and change
		// nothing else.
		old, cur := newSink(t, db, "empty-fence"), newSink(t, db, "empty-fence")
		if err := old.Apply(ctx, 1, batch(0, 2)); err != nil {
			t.Fatal(err)
		}
		if err := cur.Apply(ctx, 2, nil); err != nil {
			t.Fatal(err)
		}
		if err := old.Apply(ctx, 1, batch(2, 2)); !errors.Is(err, fence.ErrStale) {
			t.Fatalf("Apply under token 1 after an empty Apply under 2 = %v, want fence.ErrStale", err)
		}
		if p, err := cur.Position(ctx); err != nil || !bytes.Equal(p, batch(0, 2)[1].Pos) {
			t.Fatalf("position after the empty Apply %x, %v; want %x", p, err, batch(0, 2)[1].Pos)
		}
		if got := records(t, db, "empty-fence"); !equalData(got, dataOf(batch(0, 2))) {
			t.Fatalf("table has %q", got)
		}
		// On a stream with no row yet, it creates one with no position.
		fresh := newSink(t, db, "empty-fresh")
		if err := fresh.Apply(ctx, 3, nil); err != nil {
			t.Fatal(err)
		}
		if row, ok, err := fresh.Row(ctx); err != nil || !ok || row.Token != 3 || row.Pos != nil {
			t.Fatalf("row after an empty first Apply: %+v, %v, %v", row, ok, err)
		}
		if err := fresh.Apply(ctx, 0, nil); !errors.Is(err, fence.ErrNoToken) {
			t.Fatalf("empty Apply with the zero token = %v, want fence.ErrNoToken", err)
		}
	})

	t.Run("concurrent terms", func(t *testing.T) {
		// Appliers under tokens 1..8 race. Once a token was refused it
		// stays refused, the highest token is never refused, and exactly
		// the accepted batches are in the table.
		s := newSink(t, db, "race")
		var wg sync.WaitGroup
		var mu sync.Mutex
		accepted := 0
		for tok := fence.Token(1); tok <= 8; tok++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				stale := false
				for i := 0; i < 5; i++ {
					b := []replicate.Record{{Pos: []byte(fmt.Sprintf("t%d-%d", tok, i)), Data: []byte("x")}}
					err := s.Apply(ctx, tok, b)
					switch {
					case err == nil && stale:
						t.Errorf("token %d accepted after it was refused", tok)
					case err == nil:
						mu.Lock()
						accepted++
						mu.Unlock()
					case errors.Is(err, fence.ErrStale) && tok == 8:
						t.Errorf("the highest token was refused: %v", err)
					case errors.Is(err, fence.ErrStale):
						stale = true
					default:
						t.Error(err)
					}
				}
			}()
		}
		wg.Wait()
		if got := records(t, db, "race"); len(got) != accepted {
			t.Fatalf("%d records in the table, %d Applies accepted", len(got), accepted)
		}
		if row, _, err := s.Row(ctx); err != nil || row.Token != 8 {
			t.Fatalf("row token %d, %v; want 8", row.Token, err)
		}
	})

	t.Run("cancelled apply rolls back", func(t *testing.T) {
		s, err := sqlsink.New(sqlsink.Config{DB: db, Stream: "cancel", ApplyFunc: func(ctx context.Context, tx *sql.Tx, b []replicate.Record) error {
			if _, err := tx.ExecContext(ctx, `INSERT INTO hakit_records (stream, pos, data) VALUES ('cancel', $1, $2)`, []byte(b[0].Pos), b[0].Data); err != nil {
				return err
			}
			return errors.New("the apply function failed after writing")
		}})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Setup(ctx); err != nil {
			t.Fatal(err)
		}
		if err := s.Apply(ctx, 1, batch(0, 1)); err == nil {
			t.Fatal("Apply succeeded")
		}
		if got := records(t, db, "cancel"); len(got) != 0 {
			t.Fatalf("a failed Apply left %d records", len(got))
		}
		if p, _ := s.Position(ctx); p != nil {
			t.Fatalf("a failed Apply moved the position to %x", p)
		}
	})

	t.Run("conditional apply", func(t *testing.T) { conditionalApply(t, db) })
	t.Run("concurrent conditional applies", func(t *testing.T) { concurrentConditional(t, db) })

	t.Run("identity", func(t *testing.T) { identity(t, db) })

	t.Run("stream exactly once across failovers", func(t *testing.T) {
		streamFailovers(t, db)
	})
}

// A memory source streamed into PostgreSQL, stopped at random points and
// restarted under larger tokens, with the checkpoint store wiped half-way
// (the sink's position then carries the resume): the table ends equal to
// the source.
func streamFailovers(t *testing.T, db *sql.DB) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 3))
	ctx := context.Background()
	src := &memrepl.Source{}
	store := memstore.New()
	for round := 1; round <= 8; round++ {
		fill := 1 + rng.IntN(300)
		for i := 0; i < fill; i++ {
			src.Append([]byte(fmt.Sprintf("round %d record %d", round, src.Len())))
		}
		if round == 5 {
			store = memstore.New() // the checkpoint store is lost
		}
		sink := newSink(t, db, "failover")
		rctx, cancel := context.WithCancel(ctx)
		k := 1 + rng.IntN(8)
		stopping := &cancelAfter{Sink: sink, k: k, cancel: cancel}
		s := &replicate.Stream{Source: src, Sink: stopping, Store: store, Key: "cp", MaxRecords: 1 + rng.IntN(100), CheckpointRecords: 50, HeartbeatInterval: -1}
		done := make(chan error, 1)
		go func() { done <- s.Run(rctx, fence.Token(round)) }()
		want := memrepl.Pos(uint64(src.Len()))
		deadline := time.Now().Add(30 * time.Second)
		for rctx.Err() == nil {
			if p, _ := sink.Position(ctx); bytes.Equal(p, want) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: no progress", round)
			}
			time.Sleep(5 * time.Millisecond) // polling the table with a deadline
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
	// A final undisturbed term catches up.
	sink := newSink(t, db, "failover")
	s := &replicate.Stream{Source: src, Sink: sink, Store: store, Key: "cp", HeartbeatInterval: -1}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(rctx, 100) }()
	want := memrepl.Pos(uint64(src.Len()))
	deadline := time.Now().Add(30 * time.Second)
	for {
		if p, _ := sink.Position(ctx); bytes.Equal(p, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("final term did not catch up")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := records(t, db, "failover"); !equalData(got, dataOf(src.Records())) {
		t.Fatalf("table has %d records, source %d (or out of order)", len(got), src.Len())
	}
}

// cancelAfter cancels the run during its k-th Apply, before the
// transaction: the batch is abandoned mid-flight.
type cancelAfter struct {
	*sqlsink.Sink
	mu     sync.Mutex
	k      int
	cancel context.CancelFunc
}

func (c *cancelAfter) Apply(ctx context.Context, t fence.Token, b []replicate.Record) error {
	c.tick()
	return c.Sink.Apply(ctx, t, b)
}

// ApplyAt counts like Apply: the Stream applies its batches with it.
func (c *cancelAfter) ApplyAt(ctx context.Context, t fence.Token, from replicate.Position, b []replicate.Record) error {
	c.tick()
	return c.Sink.ApplyAt(ctx, t, from, b)
}

func (c *cancelAfter) tick() {
	c.mu.Lock()
	c.k--
	fire := c.k == 0
	c.mu.Unlock()
	if fire {
		c.cancel()
	}
}
