package sqlsink_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/sqlsink"
)

// Two handles on one stream stand for two Runs of one term, the first of
// which gave up on a batch that the database still commits: the late
// batch lands after the second read the position, and the second's
// ApplyAt is refused, so no record is applied twice.
func conditionalApply(t *testing.T, db *sql.DB) {
	ctx := context.Background()
	run1, run2 := newSink(t, db, "cond"), newSink(t, db, "cond")
	all := batch(0, 10)
	// No row yet: only nil is the expected position.
	if err := run1.ApplyAt(ctx, 4, all[0].Pos, all[1:3]); !errors.Is(err, replicate.ErrPositionMismatch) {
		t.Fatalf("ApplyAt at %x on a stream with no row = %v", all[0].Pos, err)
	}
	if _, ok, err := run1.Row(ctx); err != nil || ok {
		t.Fatalf("a refused ApplyAt created the row (%v, %v)", ok, err)
	}
	if err := run1.ApplyAt(ctx, 4, nil, all[:3]); err != nil {
		t.Fatalf("first ApplyAt at nil: %v", err)
	}
	if err := run1.ApplyAt(ctx, 4, nil, all[3:5]); !errors.Is(err, replicate.ErrPositionMismatch) {
		t.Fatalf("ApplyAt at nil on a stream with records = %v", err)
	}
	read, err := run2.Position(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := run1.ApplyAt(ctx, 4, read, all[3:6]); err != nil { // the late batch
		t.Fatal(err)
	}
	err = run2.ApplyAt(ctx, 4, read, all[3:])
	var mm *replicate.PositionMismatchError
	if !errors.As(err, &mm) || !errors.Is(err, replicate.ErrPositionMismatch) ||
		!bytes.Equal(mm.Want, all[2].Pos) || !bytes.Equal(mm.Have, all[5].Pos) || !strings.Contains(err.Error(), `"cond"`) {
		t.Fatalf("ApplyAt behind the late batch = %v, want a mismatch naming the stream, %x and %x", err, all[2].Pos, all[5].Pos)
	}
	// A mismatch under a newer token neither writes nor admits it; a
	// stale token is refused as stale at the right position too.
	if err := run2.ApplyAt(ctx, 9, read, all[6:]); !errors.Is(err, replicate.ErrPositionMismatch) {
		t.Fatalf("mismatch under a newer token = %v", err)
	}
	if err := run2.ApplyAt(ctx, 3, all[5].Pos, all[6:]); !errors.Is(err, fence.ErrStale) {
		t.Fatalf("stale token at the position = %v", err)
	}
	if row, _, err := run2.Row(ctx); err != nil || row.Token != 4 || !bytes.Equal(row.Pos, all[5].Pos) {
		t.Fatalf("row after the refusals %+v, %v; want token 4 at %x", row, err, all[5].Pos)
	}
	if got := records(t, db, "cond"); !equalData(got, dataOf(all[:6])) {
		t.Fatalf("table has %q", got)
	}
	// The restarted run reads the position again and carries on.
	if read, err = run2.Position(ctx); err != nil {
		t.Fatal(err)
	}
	if err := run2.ApplyAt(ctx, 4, read, all[6:]); err != nil {
		t.Fatal(err)
	}
	if got := records(t, db, "cond"); !equalData(got, dataOf(all)) {
		t.Fatalf("table has %q", got)
	}

	// A row with no position (created by a heartbeat or an empty Apply)
	// is at nil, too.
	fresh := newSink(t, db, "cond-fresh")
	if err := fresh.Apply(ctx, 2, nil); err != nil {
		t.Fatal(err)
	}
	if err := fresh.ApplyAt(ctx, 2, all[0].Pos, all[1:2]); !errors.Is(err, replicate.ErrPositionMismatch) {
		t.Fatalf("ApplyAt at %x on a row with no position = %v", all[0].Pos, err)
	}
	if err := fresh.ApplyAt(ctx, 2, nil, all[:2]); err != nil {
		t.Fatalf("ApplyAt at nil on a row with no position: %v", err)
	}
	if got := records(t, db, "cond-fresh"); !equalData(got, dataOf(all[:2])) {
		t.Fatalf("table has %q", got)
	}
}

// Two Runs of one term applying overlapping batches at the same position
// at the same time: the UPDATE's condition is re-checked against the row
// the first committed, so exactly one of them writes.
func concurrentConditional(t *testing.T, db *sql.DB) {
	ctx := context.Background()
	const rounds = 20
	a, b := newSink(t, db, "cond-race"), newSink(t, db, "cond-race")
	var from replicate.Position
	want := 0
	for round := 0; round < rounds; round++ {
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, s := range []*sqlsink.Sink{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Both start at want; a writes 3 records, b 5.
				errs[i] = s.ApplyAt(ctx, 7, from, batch(want, 3+2*i))
			}()
		}
		wg.Wait()
		won := -1
		for i, err := range errs {
			switch {
			case err == nil && won < 0:
				won = i
			case err == nil:
				t.Fatalf("round %d: both ApplyAt at %x succeeded", round, from)
			case !errors.Is(err, replicate.ErrPositionMismatch):
				t.Fatalf("round %d: ApplyAt %d = %v, want success or ErrPositionMismatch", round, i, err)
			}
		}
		if won < 0 {
			t.Fatalf("round %d: neither ApplyAt at %x succeeded: %v", round, from, errs)
		}
		want += 3 + 2*won
		from = batch(want-1, 1)[0].Pos
	}
	if got := records(t, db, "cond-race"); !equalData(got, dataOf(batch(0, want))) {
		t.Fatalf("table has %d records, want %d in order", len(got), want)
	}
}
