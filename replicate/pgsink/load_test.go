package pgsink_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/pgcdc"
	"github.com/hakit/hakit/replicate/pgcdc/pgcdctest"
	"github.com/hakit/hakit/replicate/pgsink"
)

// crashAfter fails every ApplyAt from the n-th batch that carries load
// rows on, as a crash in the middle of the initial load would.
type crashAfter struct {
	*pgsink.Sink
	n, seen atomic.Int64
}

var errCrash = errors.New("injected crash")

func (c *crashAfter) ApplyAt(ctx context.Context, t fence.Token, from replicate.Position, b []replicate.Record) error {
	if len(b) > 0 {
		if p, _ := pgcdc.DecodePos(b[len(b)-1].Pos); p.Load != nil && c.seen.Add(1) >= c.n.Load() {
			return errCrash
		}
	}
	return c.Sink.ApplyAt(ctx, t, from, b)
}

// writeWhile changes a and b until stop is called.
func writeWhile(t *testing.T, src *pgcdctest.Server, n *atomic.Int64) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := pgx.Connect(ctx, dsn(src))
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close(context.Background())
		for i := 0; ctx.Err() == nil; i++ {
			_, err := c.Exec(ctx, fmt.Sprintf(`UPDATE a SET v = 'w%d' WHERE id = %d; INSERT INTO b VALUES (%d, 'new', %d, now(), '{}', '{}', NULL); DELETE FROM a WHERE id = %d`,
				i, 1+i%3000, 100000+i, i, 3001+i))
			if err != nil && ctx.Err() == nil {
				t.Error(err)
				return
			}
			n.Add(1)
		}
	}()
	return func() { cancel(); wg.Wait() }
}

// TestInitialLoad copies the published tables consistently with the
// slot's start while the source keeps changing, crashes in the middle of
// the copy, resumes without copying again the tables already copied
// whole, and ends with the target equal to the source.
func TestInitialLoad(t *testing.T) {
	t.Parallel() // each starts its own servers
	src, dst := pair(t)
	src.Exec(t, "app",
		`INSERT INTO a SELECT g, 'a' || g FROM generate_series(1, 6000) g`,
		`INSERT INTO b SELECT g, 'k', g, now(), jsonb_build_object('g', g), ARRAY['x'], '\xabcd' FROM generate_series(1, 4000) g`,
		`INSERT INTO full_ident SELECT g % 10, 'f' FROM generate_series(1, 500) g`)
	dst.Exec(t, "app", `INSERT INTO a VALUES (-1, 'stale row in the target')`)
	p := newPipeline(t, src, dst, func(c *pgcdc.Config, _ *pgsink.Config) {
		c.InitialLoad, c.LoadBatchRows, c.ProgressInterval = true, 200, 200*time.Millisecond
	})
	crash := &crashAfter{Sink: p.sink}
	crash.n.Store(40) // a has 6000 rows in 30 chunks: the crash hits b
	p.stream.Sink = crash
	p.stream.MaxRecords = 200

	var writes atomic.Int64
	stopWrites := writeWhile(t, src, &writes)
	defer stopWrites()
	p.start(t, 1)
	select {
	case err := <-p.done:
		p.done <- err
		if !errors.Is(err, errCrash) {
			t.Fatalf("first run: %v, want the injected crash", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the crash did not happen")
	}
	pos, err := p.sink.Position(testCtx(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	mid, _ := pgcdc.DecodePos(pos)
	if mid.Load == nil {
		t.Fatalf("crashed at %s, outside the load", mid)
	}
	loaded, tables := p.src.Stats().LoadedRows, p.src.Stats().LoadedTables
	t.Logf("crashed at %s after %d rows", mid, loaded)
	// The loader reads ahead of what is applied: tables counts what it
	// read, and only the resumed load's count is compared below.

	crash.n.Store(1 << 62)
	p.start(t, 2)
	// Let the writes run into the resumed load.
	w0 := writes.Load()
	for deadline := time.Now().Add(30 * time.Second); writes.Load() < w0+50; {
		if time.Now().After(deadline) {
			t.Fatal("the writer stalled")
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}
	stopWrites()
	p.waitCaughtUp(t, src)
	again := p.src.Stats().LoadedRows - loaded
	if n := p.src.Stats().LoadedTables - tables; n != 2 {
		t.Errorf("the resumed load copied %d tables whole, want 2 (b and full_ident; a was copied before the crash)", n)
	}
	for _, tb := range []struct{ name, order string }{{"a", "id"}, {"b", "k1, k2"}, {"full_ident", "x, y"}} {
		if s, d := checksum(t, src, tb.name, tb.order), checksum(t, dst, tb.name, tb.order); s != d {
			t.Errorf("table %s: source %s, target %s", tb.name, s, d)
		}
	}
	if err := p.stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("crashed at %s; copied %d rows before, %d after", mid, loaded, again)
}
