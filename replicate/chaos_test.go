package replicate_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/memrepl"
	"github.com/hakit/hakit/storage"
	"github.com/hakit/hakit/storage/memstore"
)

var (
	chaosSeed   = flag.Uint64("replicate.seed", 0, "seed for the failover tests (0: time-based)")
	chaosRounds = flag.Int("replicate.rounds", 40, "restarts per failover test")
)

// errInjected is what an injected failure returns.
var errInjected = errors.New("injected failure")

// fault says where and how one Run is interrupted. The k-th call at the
// site triggers it; before is whether it fires before the real call.
type fault struct {
	site   string // "apply", "cas", "next"
	k      int64
	before bool
	kind   string // "cancel": ctx cancelled (clean stop); "crash": every later write fails, as if the process died; "error": this call fails
}

func (f fault) String() string {
	when := "after"
	if f.before {
		when = "before"
	}
	return fmt.Sprintf("%s %s call %d of %s", f.kind, when, f.k, f.site)
}

// injector fires one fault. The wrappers below consult it.
type injector struct {
	f       fault
	cancel  context.CancelFunc
	calls   sync.Map // site -> *atomic.Int64
	crashed atomic.Bool
	fired   atomic.Bool
}

// at is called around each real call at site; it returns an error to
// return instead of or after the call.
func (in *injector) at(site string, before bool) error {
	if in.crashed.Load() {
		return fmt.Errorf("%w: process is down", errInjected)
	}
	if site != in.f.site || before != in.f.before {
		return nil
	}
	c, _ := in.calls.LoadOrStore(site, new(atomic.Int64))
	if c.(*atomic.Int64).Add(1) != in.f.k || in.fired.Swap(true) {
		return nil
	}
	switch in.f.kind {
	case "cancel":
		in.cancel()
		return nil
	case "crash":
		in.crashed.Store(true)
	}
	return fmt.Errorf("%w at %v", errInjected, in.f)
}

// wrap runs call with the fault's checks before and after it.
func (in *injector) wrap(site string, call func() error) error {
	if err := in.at(site, true); err != nil {
		return err
	}
	if err := call(); err != nil {
		return err
	}
	return in.at(site, false)
}

type faultyStore struct {
	storage.Store
	in *injector
}

func (s faultyStore) CompareAndSwap(ctx context.Context, t fence.Token, key string, old storage.Version, v []byte) (storage.Version, error) {
	var ver storage.Version
	err := s.in.wrap("cas", func() (err error) {
		ver, err = s.Store.CompareAndSwap(ctx, t, key, old, v)
		return err
	})
	return ver, err
}

type faultySink struct {
	inner interface {
		replicate.Sink
		Position(context.Context) (replicate.Position, error)
	}
	in *injector
}

func (s faultySink) Apply(ctx context.Context, t fence.Token, b []replicate.Record) error {
	return s.in.wrap("apply", func() error { return s.inner.Apply(ctx, t, b) })
}

type faultyDurableSink struct{ faultySink }

// faultyConditionalSink makes the Stream apply every batch with ApplyAt,
// faults injected as for Apply.
type faultyConditionalSink struct {
	faultyDurableSink
	cond *memrepl.ConditionalSink
}

func (s faultyConditionalSink) ApplyAt(ctx context.Context, t fence.Token, from replicate.Position, b []replicate.Record) error {
	return s.in.wrap("apply", func() error { return s.cond.ApplyAt(ctx, t, from, b) })
}

func (s faultyDurableSink) Position(ctx context.Context) (replicate.Position, error) {
	return s.inner.Position(ctx)
}

type faultySource struct {
	*memrepl.Source
	in *injector
}

func (s faultySource) Open(ctx context.Context, from replicate.Checkpoint) (replicate.Cursor, error) {
	c, err := s.Source.Open(ctx, from)
	return faultyCursor{c, s.in}, err
}

type faultyCursor struct {
	replicate.Cursor
	in *injector
}

func (c faultyCursor) Next(ctx context.Context, max int) ([]replicate.Record, error) {
	var recs []replicate.Record
	err := c.in.wrap("next", func() (err error) {
		recs, err = c.Cursor.Next(ctx, max)
		return err
	})
	return recs, err
}

// plainAsDurable adapts memrepl.Sink to the faultySink's inner type; its
// Position is never called because the wrapper is not a DurableSink.
type plainAsDurable struct{ *memrepl.Sink }

func (plainAsDurable) Position(context.Context) (replicate.Position, error) {
	panic("plain sink has no position")
}

func seed(t *testing.T) uint64 {
	t.Helper()
	s := *chaosSeed
	if s == 0 {
		s = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (rerun with -replicate.seed=%d)", s, s)
	return s
}

// Interrupt the stream at random points — mid-batch, mid-checkpoint, in
// the reader — and restart it under a new, larger token, many times.
func TestFailoverChaos(t *testing.T) {
	for _, mode := range []string{"durable", "conditional", "plain"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(seed(t), 7))
			chaos(t, rng, mode)
		})
	}
}

// chaos runs the failover rounds against a memrepl.DurableSink ("durable"),
// the same through its ConditionalSink ("conditional"), or a plain Sink.
func chaos(t *testing.T, rng *rand.Rand, mode string) {
	durable := mode != "plain"
	ctx := context.Background()
	store := memstore.New()
	src := &memrepl.Source{}
	var durSink memrepl.DurableSink
	var plain memrepl.Sink
	maxRecords := 1 + rng.IntN(20)
	every := 1 + rng.IntN(50)
	bound := every + maxRecords - 1
	t.Logf("MaxRecords %d, CheckpointRecords %d: replay bound %d", maxRecords, every, bound)

	var prevCP replicate.Position
	fired, totalReplay := 0, 0
	defer func() { t.Logf("%d faults fired, %d records replayed in all", fired, totalReplay) }()
	sites := []string{"apply", "cas", "next"}
	kinds := []string{"cancel", "crash", "error"}
	for round := 1; round <= *chaosRounds+1; round++ {
		fill(src, src.Len(), rng.IntN(200))
		last := round == *chaosRounds+1 // a final, undisturbed round
		if durable && round == *chaosRounds/2 {
			// The checkpoint store is lost. Either the operator rebuilds
			// the checkpoint from the sink, or the next Run resumes from
			// the sink's position by itself; no record may repeat.
			store, prevCP = memstore.New(), nil
			if rng.IntN(2) == 0 {
				cp, err := replicate.RebuildCheckpoint(ctx, store, "cp", fence.Token(round*10), &durSink, replicate.CompareBytes, time.Now())
				if err != nil {
					t.Fatal(err)
				}
				prevCP = cp.Pos
				t.Logf("round %d: store lost, checkpoint rebuilt at %x", round, cp.Pos)
			} else {
				t.Logf("round %d: store lost, not rebuilt", round)
			}
		}
		rctx, cancel := context.WithCancel(ctx)
		in := &injector{cancel: cancel, f: fault{site: sites[rng.IntN(3)], k: 1 + rng.Int64N(15), before: rng.IntN(2) == 0, kind: kinds[rng.IntN(3)]}}
		if last {
			in.f = fault{}
		}
		var sink replicate.Sink
		var recs func() []replicate.Record
		var w waiter
		switch mode {
		case "durable":
			sink = faultyDurableSink{faultySink{&durSink, in}}
			recs, w = durSink.Records, &durSink
		case "conditional":
			sink = faultyConditionalSink{faultyDurableSink{faultySink{&durSink, in}}, durSink.Conditional()}
			recs, w = durSink.Records, &durSink
		default:
			sink = faultySink{plainAsDurable{&plain}, in}
			recs, w = plain.Records, &plain
		}
		before := recs()
		var maxBefore replicate.Position
		for _, r := range before {
			if bytes.Compare(r.Pos, maxBefore) > 0 {
				maxBefore = r.Pos
			}
		}
		s := &replicate.Stream{
			Source: faultySource{src, in}, Sink: sink, Store: faultyStore{store, in}, Key: "cp",
			MaxRecords: maxRecords, CheckpointRecords: every, CheckpointInterval: -1, HeartbeatInterval: -1,
			ReadAhead: 1 + rng.IntN(4),
		}
		tok := fence.Token(round * 10)
		done := make(chan error, 1)
		go func() { done <- s.Run(rctx, tok) }()

		// Wait until the Run either ends by itself or has everything.
		want := memrepl.Pos(uint64(src.Len()))
		caught := make(chan struct{})
		wctx, wcancel := context.WithCancel(ctx)
		go func() {
			if w.Wait(wctx, func(r []replicate.Record, _ []replicate.Heartbeat) bool {
				return len(r) > 0 && bytes.Equal(r[len(r)-1].Pos, want) || len(want) == 0 || bytes.Equal(want, memrepl.Pos(0))
			}) == nil {
				close(caught)
			}
		}()
		var err error
		select {
		case err = <-done:
		case <-caught:
			cancel()
			err = <-done
		}
		wcancel()
		cancel()
		if in.fired.Load() {
			fired++
		}
		// A Run cancelled before it got going returns ctx's error.
		if err != nil && !errors.Is(err, errInjected) && !errors.Is(err, context.Canceled) {
			t.Fatalf("round %d (%v): Run = %v", round, in.f, err)
		}
		if last && err != nil {
			t.Fatalf("final round: %v", err)
		}

		cp := loadCP(t, store, "cp")
		if bytes.Compare(cp.Pos, prevCP) < 0 {
			t.Fatalf("round %d (%v): checkpoint went back from %x to %x", round, in.f, prevCP, cp.Pos)
		}
		if cp.Token > tok {
			t.Fatalf("round %d: checkpoint token %d above the round's %d", round, cp.Token, tok)
		}
		prevCP = cp.Pos

		after := recs()
		replayed := 0
		for _, r := range after[len(before):] {
			if bytes.Compare(r.Pos, maxBefore) <= 0 {
				replayed++
			}
		}
		totalReplay += replayed
		if durable && replayed > 0 {
			t.Fatalf("round %d (%v): durable sink got %d duplicates", round, in.f, replayed)
		}
		if replayed > bound {
			t.Fatalf("round %d (%v): replayed %d records, bound %d", round, in.f, replayed, bound)
		}
	}

	if durable {
		checkExact(t, src, durSink.Records())
		return
	}
	// At least once, and each restart continues in order.
	seen := make(map[string]bool)
	for _, r := range plain.Records() {
		seen[string(r.Pos)] = true
	}
	for i, r := range src.Records() {
		if !seen[string(r.Pos)] {
			t.Fatalf("record %d (%q) never reached the plain sink", i, r.Data)
		}
	}
}
