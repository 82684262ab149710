package replicate_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/memrepl"
	"github.com/hakit/hakit/storage"
	"github.com/hakit/hakit/storage/memstore"
)

// unfencedSink forwards to a DurableSink but ignores the caller's token
// (it always writes under the newest one), to show that the Store alone
// still stops a deposed stream.
type unfencedSink struct{ inner *memrepl.Sink }

func (u unfencedSink) Apply(ctx context.Context, _ fence.Token, b []replicate.Record) error {
	return u.inner.Apply(ctx, 1<<62, b)
}

// A deposed stream (older token) can neither write through a fencing sink
// nor advance the checkpoint; its Run stops with fence.ErrStale.
func TestDeposedStreamIsFenced(t *testing.T) {
	ctx := context.Background()
	for _, fencingSink := range []bool{true, false} {
		name := "fencing sink"
		if !fencingSink {
			name = "store only"
		}
		t.Run(name, func(t *testing.T) {
			store := memstore.New()
			src := &memrepl.Source{}
			mem := &memrepl.Sink{}
			var sink replicate.Sink = mem
			if !fencingSink {
				sink = unfencedSink{mem}
			}
			old := &replicate.Stream{Source: src, Sink: sink, Store: store, Key: "cp", CheckpointRecords: 1, HeartbeatInterval: -1}
			fill(src, 0, 10)
			ctxOld, cancelOld := context.WithCancel(ctx)
			defer cancelOld()
			done := make(chan error, 1)
			go func() { done <- old.Run(ctxOld, 5) }()
			waitRecords(t, mem, 10)
			waitFor(t, func() bool { return bytes.Equal(loadCP(t, store, "cp").Pos, memrepl.Pos(10)) })

			// A new term (token 7) is admitted by the store and the sink
			// while the old stream still runs.
			if _, err := store.Put(ctx, 7, "other", []byte("x")); err != nil {
				t.Fatal(err)
			}
			if fencingSink {
				if err := mem.ApplyHeartbeat(ctx, 7, replicate.Heartbeat{}); err != nil {
					t.Fatal(err)
				}
			}
			fill(src, 10, 5)
			err := <-done
			if !errors.Is(err, fence.ErrStale) {
				t.Fatalf("deposed Run = %v, want fence.ErrStale", err)
			}
			cp := loadCP(t, store, "cp")
			if !bytes.Equal(cp.Pos, memrepl.Pos(10)) || cp.Token != 5 {
				t.Fatalf("checkpoint moved to %x token %d by the deposed stream", cp.Pos, cp.Token)
			}
			if fencingSink && mem.Len() != 10 {
				t.Fatalf("deposed stream wrote %d records through a fencing sink", mem.Len()-10)
			}

			// The deposed token cannot even start again, and is refused
			// before it applies anything, even to a sink that does not
			// fence.
			before := mem.Len()
			if err := old.Run(ctx, 5); !errors.Is(err, fence.ErrStale) {
				t.Fatalf("restart under the old token = %v, want fence.ErrStale", err)
			}
			if mem.Len() != before {
				t.Fatalf("a restart under a deposed token applied %d records", mem.Len()-before)
			}
			// The new term resumes from the checkpoint.
			cur := &replicate.Stream{Source: src, Sink: sink, Store: store, Key: "cp", HeartbeatInterval: -1}
			stop := runStream(t, cur, 7)
			waitFor(t, func() bool {
				return bytes.Equal(loadCP(t, store, "cp").Pos, memrepl.Pos(15)) || cur.Stats().Records == 5
			})
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			if cp := loadCP(t, store, "cp"); !bytes.Equal(cp.Pos, memrepl.Pos(15)) || cp.Token != 7 {
				t.Fatalf("new term's checkpoint %x token %d", cp.Pos, cp.Token)
			}
		})
	}
}

// RebuildCheckpoint restores a lost checkpoint from a DurableSink's
// position and never moves an existing one backwards.
func TestRebuildCheckpoint(t *testing.T) {
	ctx := context.Background()
	src := &memrepl.Source{}
	fill(src, 0, 30)
	sink := &memrepl.DurableSink{}
	s := &replicate.Stream{Source: src, Sink: sink, Store: memstore.New(), Key: "cp", HeartbeatInterval: -1}
	stop := runStream(t, s, 3)
	waitRecords(t, sink, 30)
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// The checkpoint store is lost: a new, empty one.
	lost := memstore.New()
	now := s.Stats().LastApplied
	cp, err := replicate.RebuildCheckpoint(ctx, lost, "cp", 4, sink, src.Compare, now)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(cp.Pos, memrepl.Pos(30)) || cp.Token != 4 || !cp.Time.Equal(now) {
		t.Fatalf("rebuilt %+v", cp)
	}
	if got := loadCP(t, lost, "cp"); !bytes.Equal(got.Pos, cp.Pos) {
		t.Fatalf("stored %x, want %x", got.Pos, cp.Pos)
	}
	// A newer stored checkpoint is left alone.
	ahead := replicate.Checkpoint{Pos: memrepl.Pos(31), Token: 4}
	if _, err := lost.Put(ctx, 4, "cp", replicate.EncodeCheckpoint(ahead)); err != nil {
		t.Fatal(err)
	}
	if cp, err := replicate.RebuildCheckpoint(ctx, lost, "cp", 5, sink, src.Compare, now); err != nil || !bytes.Equal(cp.Pos, ahead.Pos) {
		t.Fatalf("rebuild over a newer checkpoint = %+v, %v", cp, err)
	}
	// A stale token and a corrupt checkpoint are errors.
	if _, err := replicate.RebuildCheckpoint(ctx, memstoreAdmitting(t, 9), "cp", 8, sink, src.Compare, now); !errors.Is(err, fence.ErrStale) {
		t.Fatalf("stale rebuild = %v", err)
	}
	if _, err := lost.Put(ctx, 5, "cp", []byte("junk")); err != nil {
		t.Fatal(err)
	}
	// (The stale attempt fenced the sink at 8: Rebuild binds the sink
	// under its token before it writes the checkpoint.)
	if _, err := replicate.RebuildCheckpoint(ctx, lost, "cp", 9, sink, src.Compare, now); !errors.Is(err, replicate.ErrCorruptCheckpoint) {
		t.Fatalf("rebuild over a corrupt checkpoint = %v", err)
	}

	// A stream over the rebuilt store resumes without re-applying.
	fresh := memstore.New()
	if _, err := replicate.RebuildCheckpoint(ctx, fresh, "cp", 10, sink, src.Compare, now); err != nil {
		t.Fatal(err)
	}
	fill(src, 30, 5)
	s2 := &replicate.Stream{Source: src, Sink: sink, Store: fresh, Key: "cp", HeartbeatInterval: -1}
	stop = runStream(t, s2, 10)
	waitRecords(t, sink, 35)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkExact(t, src, sink.Records())
}

// memstoreAdmitting returns a store that has admitted tok.
func memstoreAdmitting(t *testing.T, tok fence.Token) storage.Store {
	t.Helper()
	s := memstore.New()
	if _, err := s.Put(context.Background(), tok, "admit", nil); err != nil {
		t.Fatal(err)
	}
	return s
}

// waitFor polls cond until it holds, failing the test after a deadline.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached before the deadline")
		}
		time.Sleep(time.Millisecond)
	}
}
