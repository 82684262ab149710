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
