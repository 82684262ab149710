package replicate_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/memrepl"
	"github.com/hakit/hakit/storage/memstore"
)

// runTo runs s under tok until sink holds n records, then stops it.
func runTo(t *testing.T, s *replicate.Stream, tok fence.Token, sink waiter, n int) {
	t.Helper()
	stop := runStream(t, s, tok)
	waitRecords(t, sink, n)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// The target is restored from a backup taken at record 10 after the
// checkpoint reached 30. Resuming from the checkpoint (as the Stream once
// did) would leave records 11 to 30 out of the target for good; they must
// be delivered again, from the target's own position, exactly once.
func TestSinkRestoredFromBackupIsReplayed(t *testing.T) {
	for _, conditional := range []bool{false, true} {
		name := map[bool]string{false: "durable", true: "conditional"}[conditional]
		t.Run(name, func(t *testing.T) {
			store, src := memstore.New(), &memrepl.Source{}
			fill(src, 0, 10)
			sink := &memrepl.DurableSink{}
			asSink := func(d *memrepl.DurableSink) replicate.Sink {
				if conditional {
					return d.Conditional()
				}
				return d
			}
			s := &replicate.Stream{Source: src, Sink: asSink(sink), Store: store, Key: "cp", HeartbeatInterval: -1}
			runTo(t, s, 1, sink, 10)
			backup := sink.Backup()
			fill(src, 10, 20)
			runTo(t, s, 2, sink, 30)
			if cp := loadCP(t, store, "cp"); !equalPos(cp.Pos, memrepl.Pos(30)) {
				t.Fatalf("checkpoint at %x, want 30 records", cp.Pos)
			}

			// Restore the backup in the sink's place and go on.
			fill(src, 30, 5)
			s2 := &replicate.Stream{Source: src, Sink: asSink(backup), Store: store, Key: "cp", HeartbeatInterval: -1}
			runTo(t, s2, 3, backup, 35)
			checkExact(t, src, backup.Records())
			if cp := loadCP(t, store, "cp"); !equalPos(cp.Pos, memrepl.Pos(35)) {
				t.Fatalf("checkpoint at %x after the replay, want 35 records", cp.Pos)
			}
		})
	}
}

// The same restored target, but the source has been trimmed past the
// target's position: records 11 to 20 are in neither. The Run must refuse
// to start, apply nothing, and say which key and positions and what to do.
func TestSinkBehindTrimmedSourceIsAGap(t *testing.T) {
	store, src := memstore.New(), &memrepl.Source{}
	fill(src, 0, 10)
	sink := &memrepl.DurableSink{}
	s := &replicate.Stream{Source: src, Sink: sink, Store: store, Key: "orders/cp", HeartbeatInterval: -1}
	runTo(t, s, 1, sink, 10)
	backup := sink.Backup()
	fill(src, 10, 20)
	runTo(t, s, 2, sink, 30)
	src.Trim(20)

	s2 := &replicate.Stream{Source: src, Sink: backup, Store: store, Key: "orders/cp", HeartbeatInterval: -1}
	err := s2.Run(refusalCtx(t), 3)
	if !errors.Is(err, replicate.ErrGap) || !errors.Is(err, memrepl.ErrTrimmed) {
		t.Fatalf("Run with the sink behind a trimmed source: %v; want ErrGap (and the source's ErrTrimmed)", err)
	}
	for _, want := range []string{`"orders/cp"`, "000000000000000a", "000000000000001e", "restore"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	if n := backup.Len(); n != 10 {
		t.Fatalf("the restored sink has %d records after the refused Run, want its 10", n)
	}
	if cp := loadCP(t, store, "orders/cp"); !equalPos(cp.Pos, memrepl.Pos(30)) {
		t.Fatalf("checkpoint moved to %x, want it left at 30", cp.Pos)
	}
}

// A checkpoint key reused for another target: stream A delivered 20
// records to its sink; stream B, configured with the same key (or etcd
// prefix) but a new, empty target, must not start from A's checkpoint (it
// would skip all 20), nor quietly take the checkpoint over: it is refused
// until an operator re-points the key on purpose with RebuildCheckpoint,
// after which B delivers everything.
func TestReusedKeyIsRefused(t *testing.T) {
	store, src := memstore.New(), &memrepl.Source{}
	fill(src, 0, 20)
	sinkA := &memrepl.DurableSink{}
	a := &replicate.Stream{Source: src, Sink: sinkA, Store: store, Key: "cp", HeartbeatInterval: -1}
	runTo(t, a, 1, sinkA, 20)

	sinkB := &memrepl.DurableSink{}
	b := &replicate.Stream{Source: src, Sink: sinkB, Store: store, Key: "cp", HeartbeatInterval: -1}
	err := b.Run(refusalCtx(t), 2)
	idA, _ := sinkA.Identity(context.Background())
	idB, _ := sinkB.Identity(context.Background())
	if !errors.Is(err, replicate.ErrIdentity) || !strings.Contains(err.Error(), idA.ID) || !strings.Contains(err.Error(), idB.ID) ||
		!strings.Contains(err.Error(), "RebuildCheckpoint") {
		t.Fatalf("Run of a second target on a used key: %v; want ErrIdentity naming both sinks and RebuildCheckpoint", err)
	}
	if sinkB.Len() != 0 {
		t.Fatalf("the refused Run applied %d records", sinkB.Len())
	}

	// On purpose: point the key at B's target, then B catches up in full.
	cp, err := replicate.RebuildCheckpoint(context.Background(), store, "cp", 3, sinkB, replicate.CompareBytes, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if cp.Pos != nil || cp.Sink != idB.ID {
		t.Fatalf("re-pointed checkpoint %+v, want the start of B's target, naming it", cp)
	}
	runTo(t, b, 4, sinkB, 20)
	checkExact(t, src, sinkB.Records())
}

// A target bound to one stream is refused by a stream with another key:
// two streams must not deliver into one target.
func TestSinkOfAnotherStreamIsRefused(t *testing.T) {
	src := &memrepl.Source{}
	fill(src, 0, 5)
	sink := &memrepl.DurableSink{}
	a := &replicate.Stream{Source: src, Sink: sink, Store: memstore.New(), Key: "a/cp", HeartbeatInterval: -1}
	runTo(t, a, 1, sink, 5)
	b := &replicate.Stream{Source: src, Sink: sink, Store: memstore.New(), Key: "b/cp", HeartbeatInterval: -1}
	err := b.Run(refusalCtx(t), 2)
	if !errors.Is(err, replicate.ErrIdentity) || !strings.Contains(err.Error(), `"a/cp"`) || !strings.Contains(err.Error(), `"b/cp"`) {
		t.Fatalf("Run into a target bound to another stream: %v; want ErrIdentity naming both streams", err)
	}
	if sink.Len() != 5 {
		t.Fatalf("the refused Run changed the target: %d records", sink.Len())
	}
}

// refusalCtx bounds a Run that is expected to refuse at once: should it
// start instead, it stops (and the test fails on its nil error) rather
// than running for ever.
func refusalCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func equalPos(a, b replicate.Position) bool { return replicate.CompareBytes(a, b) == 0 }
