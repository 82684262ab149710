package pgcdc

import (
	"context"
	"maps"
	"sync"
	"testing"
	"time"
)

// filteringCursor is a cursor in the streaming phase of a resumed
// initial load: table public.b was copied again under a snapshot at
// 0x500, so its changes in transactions that committed before 0x500 are
// in the copy and must be skipped.
func filteringCursor(t *testing.T) (*cursor, *receiver) {
	t.Helper()
	s, err := New(Config{ConnString: "postgres://cdc@127.0.0.1/app", Slot: "s", Publication: "p", ProgressInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	c := &cursor{s: s, stats: &s.stats, filters: map[string]LSN{"public.b": 0x500}}
	c.cond = sync.NewCond(&c.mu)
	r := &receiver{c: c, dec: newDecoder(1 << 20), every: time.Second, received: 0x100, lastLSN: 0x100}
	return c, r
}

// A progress record is a resume point like a transaction's last change:
// while filters are active it must carry them, or a Run that resumes from
// it applies again the changes the copy already holds. Past the latest
// snapshot the filters are done with.
func TestProgressCarriesLoadFilters(t *testing.T) {
	ctx := testContext(t)
	c, r := filteringCursor(t)
	want := maps.Clone(c.filters)

	r.lastQueued = time.Now().Add(-time.Hour)
	if err := r.progress(ctx, 0x300, time.Now()); err != nil {
		t.Fatal(err)
	}
	recs, err := c.Next(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	p, err := DecodePos(recs[0].Pos)
	if err != nil {
		t.Fatal(err)
	}
	if p.Load == nil {
		t.Fatalf("progress at %s before the snapshot at 0/500 carries no load state: a resume from it skips no change of public.b", p)
	}
	st, err := decodeLoadState(p.Load)
	if err != nil {
		t.Fatal(err)
	}
	if st.copying || !maps.Equal(st.filters, want) {
		t.Errorf("progress carries %+v, want streaming with filters %v", st, want)
	}
	if p.LSN != 0x300 || !p.Last {
		t.Errorf("progress position %s, want 0/300, a resume point", p)
	}

	r.lastQueued = time.Now().Add(-time.Hour)
	if err := r.progress(ctx, 0x600, time.Now()); err != nil {
		t.Fatal(err)
	}
	if recs, err = c.Next(ctx, 10); err != nil {
		t.Fatal(err)
	}
	if p, _ := DecodePos(recs[0].Pos); p.Load != nil || c.filters != nil {
		t.Errorf("progress at %s past every snapshot: state %x, filters %v; want none", p, p.Load, c.filters)
	}
}

// The queue's byte count must return to zero when Next has taken
// everything, whatever the filter dropped or the positions grew by;
// otherwise it creeps up until push waits forever on an empty queue.
func TestQueueAccountsWhatItHolds(t *testing.T) {
	ctx := testContext(t)
	c, r := filteringCursor(t)
	cols := []Column{{Name: "id", Type: 23, TypeMod: -1, Key: true}, {Name: "v", Type: 25, TypeMod: -1}}
	ins := func(rel byte, id string) []byte {
		return append([]byte{'I', 0, 0, 0, rel, 'N'}, wireTuple(sp(id), sp("value"))...)
	}
	msgs := [][]byte{msgBegin(0x200, 7), msgRelation(1, "public", "a", cols...), msgRelation(2, "public", "b", cols...),
		ins(1, "1"), ins(2, "2"), ins(2, "3"), ins(1, "4"), msgCommit(0x200, 0x280)}
	for round := range 3 {
		var tx *txn
		for _, m := range msgs {
			var err error
			if tx, err = r.dec.decode(m); err != nil {
				t.Fatal(err)
			}
		}
		if err := r.transaction(ctx, tx); err != nil {
			t.Fatal(err)
		}
		recs, err := c.Next(ctx, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 2 {
			t.Fatalf("round %d: %d records, want the 2 of public.a", round, len(recs))
		}
		c.mu.Lock()
		queued := c.queued
		c.mu.Unlock()
		if queued != 0 {
			t.Fatalf("round %d: queue empty but counts %d bytes", round, queued)
		}
	}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}
