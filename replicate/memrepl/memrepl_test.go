package memrepl_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/memrepl"
)

func TestSourceCursor(t *testing.T) {
	ctx := context.Background()
	src := &memrepl.Source{}
	src.Append([]byte("a"), []byte("b"), []byte("c"))
	c, err := src.Open(ctx, replicate.Checkpoint{Pos: memrepl.Pos(1)})
	if err != nil {
		t.Fatal(err)
	}
	recs, err := c.Next(ctx, 10)
	if err != nil || len(recs) != 2 || string(recs[0].Data) != "b" || !bytes.Equal(recs[1].Pos, memrepl.Pos(3)) {
		t.Fatalf("Next = %+v, %v", recs, err)
	}
	// Appending to the returned slice must not reach the source.
	_ = append(recs, replicate.Record{Data: []byte("evil")})
	src.Append([]byte("d"))
	if got := src.Records()[3].Data; string(got) != "d" {
		t.Fatalf("source record 3 is %q", got)
	}
	cctx, cancel := context.WithCancel(ctx)
	recs, _ = c.Next(cctx, 10)
	cancel()
	if _, err := c.Next(cctx, 10); !errors.Is(err, context.Canceled) {
		t.Fatalf("Next at the end with a cancelled ctx = %v", err)
	}
	if cp := c.Checkpoint(); !bytes.Equal(cp.Pos, memrepl.Pos(4)) || len(recs) != 1 {
		t.Fatalf("checkpoint %x after %d records", cp.Pos, len(recs))
	}
	for _, p := range []replicate.Position{memrepl.Pos(9), {1, 2}} {
		if _, err := src.Open(ctx, replicate.Checkpoint{Pos: p}); !errors.Is(err, memrepl.ErrPosition) {
			t.Errorf("Open(%x) = %v, want ErrPosition", p, err)
		}
	}
}

func TestSinksFence(t *testing.T) {
	ctx := context.Background()
	for _, sink := range []interface {
		replicate.HeartbeatSink
		Len() int
	}{&memrepl.Sink{}, &memrepl.DurableSink{}, memrepl.NewDiscardSink()} {
		t.Run(fmt.Sprintf("%T", sink), func(t *testing.T) {
			b := []replicate.Record{{Pos: memrepl.Pos(1), Data: []byte("x")}}
			if err := sink.Apply(ctx, 5, b); err != nil {
				t.Fatal(err)
			}
			if err := sink.Apply(ctx, 4, b); !errors.Is(err, fence.ErrStale) {
				t.Fatalf("stale Apply = %v", err)
			}
			if err := sink.ApplyHeartbeat(ctx, 4, replicate.Heartbeat{}); !errors.Is(err, fence.ErrStale) {
				t.Fatalf("stale heartbeat = %v", err)
			}
			if sink.Len() != 1 {
				t.Fatalf("Len %d after one accepted record", sink.Len())
			}
		})
	}
	d := &memrepl.DurableSink{}
	if p, _ := d.Position(ctx); p != nil {
		t.Fatalf("empty sink at %x", p)
	}
	_ = d.Apply(ctx, 1, []replicate.Record{{Pos: memrepl.Pos(7)}})
	if p, _ := d.Position(ctx); !bytes.Equal(p, memrepl.Pos(7)) {
		t.Fatalf("position %x", p)
	}
}

func TestGenerator(t *testing.T) {
	ctx := context.Background()
	g := &memrepl.Generator{N: 5, Data: func(i uint64) []byte { return []byte{byte(i)} }}
	c, err := g.Open(ctx, replicate.Checkpoint{Pos: memrepl.Pos(2)})
	if err != nil {
		t.Fatal(err)
	}
	recs, err := c.Next(ctx, 10)
	if err != nil || len(recs) != 3 || recs[0].Data[0] != 2 || !bytes.Equal(recs[2].Pos, memrepl.Pos(5)) {
		t.Fatalf("Next = %+v, %v", recs, err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.Next(cctx, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("Next past the end = %v", err)
	}
	if _, err := g.Open(ctx, replicate.Checkpoint{Pos: memrepl.Pos(6)}); !errors.Is(err, memrepl.ErrPosition) {
		t.Fatalf("Open past N = %v", err)
	}
}

// A batch that an earlier run under the same token sent and that lands
// after the next run read the position is refused by ApplyAt, and so is
// anything else that does not start where the sink stands.
func TestConditionalSink(t *testing.T) {
	ctx := context.Background()
	recs := func(from, to uint64) []replicate.Record {
		var out []replicate.Record
		for i := from + 1; i <= to; i++ {
			out = append(out, replicate.Record{Pos: memrepl.Pos(i), Data: []byte{byte(i)}})
		}
		return out
	}
	d := (&memrepl.DurableSink{}).Conditional()
	if err := d.ApplyAt(ctx, 3, nil, recs(0, 2)); err != nil {
		t.Fatalf("first ApplyAt at nil = %v", err)
	}
	// Run 2 of token 3 reads position 2; run 1's late batch 2..4 lands.
	read, _ := d.Position(ctx)
	if err := d.ApplyAt(ctx, 3, memrepl.Pos(2), recs(2, 4)); err != nil {
		t.Fatal(err)
	}
	// Run 2 applies what it read from position 2: refused.
	err := d.ApplyAt(ctx, 3, read, recs(2, 5))
	var mm *replicate.PositionMismatchError
	if !errors.Is(err, replicate.ErrPositionMismatch) || !errors.As(err, &mm) ||
		!bytes.Equal(mm.Want, memrepl.Pos(2)) || !bytes.Equal(mm.Have, memrepl.Pos(4)) {
		t.Fatalf("ApplyAt at a stale position = %v, want a mismatch naming 2 and 4", err)
	}
	for name, tc := range map[string]struct {
		tok  fence.Token
		from replicate.Position
		want error
	}{
		"nil from on a sink with records": {3, nil, replicate.ErrPositionMismatch},
		"position ahead":                  {3, memrepl.Pos(9), replicate.ErrPositionMismatch},
		"stale token at the position":     {2, memrepl.Pos(4), fence.ErrStale},
		"stale token elsewhere":           {2, memrepl.Pos(1), fence.ErrStale},
		"newer token elsewhere":           {7, memrepl.Pos(1), replicate.ErrPositionMismatch},
		"empty batch elsewhere":           {3, memrepl.Pos(1), replicate.ErrPositionMismatch},
	} {
		batch := recs(4, 6)
		if name == "empty batch elsewhere" {
			batch = nil
		}
		if err := d.ApplyAt(ctx, tc.tok, tc.from, batch); !errors.Is(err, tc.want) {
			t.Errorf("%s: ApplyAt = %v, want %v", name, err, tc.want)
		}
	}
	// Nothing refused was kept, and the refused newer token was not
	// admitted: token 3 still applies.
	if err := d.ApplyAt(ctx, 3, memrepl.Pos(4), recs(4, 5)); err != nil {
		t.Fatalf("ApplyAt after the refusals = %v", err)
	}
	if got, want := d.Records(), recs(0, 5); !equalRecords(got, want) {
		t.Fatalf("sink holds %v, want %v", got, want)
	}
	if err := d.ApplyAt(ctx, 4, memrepl.Pos(5), nil); err != nil {
		t.Fatalf("empty ApplyAt at the position = %v", err)
	}
	if err := d.Apply(ctx, 3, nil); !errors.Is(err, fence.ErrStale) {
		t.Fatalf("the empty ApplyAt under 4 did not admit it: Apply under 3 = %v", err)
	}
}

func equalRecords(a, b []replicate.Record) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i].Pos, b[i].Pos) || !bytes.Equal(a[i].Data, b[i].Data) {
			return false
		}
	}
	return true
}
