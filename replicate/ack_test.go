package replicate_test

import (
	"context"
	"errors"
	"fmt"
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

// txSource returns whole "transactions" of the sizes in sizes, in turn,
// from a memrepl.Source, as an AtomicChunker and Acknowledger; it records
// where each chunk ended and every acknowledgement.
type txSource struct {
	*memrepl.Source
	sizes []int
	sink  *memrepl.DurableSink

	mu      sync.Mutex
	ends    map[string]bool // last Pos of every chunk returned
	acks    []replicate.Position
	ackErrs []string
}

func (s *txSource) Open(ctx context.Context, from replicate.Checkpoint) (replicate.Cursor, error) {
	c, err := s.Source.Open(ctx, from)
	if err != nil {
		return nil, err
	}
	return &txCursor{Cursor: c, s: s}, nil
}

type txCursor struct {
	replicate.Cursor
	s *txSource
	i int
}

func (c *txCursor) AtomicChunks() bool { return true }

func (c *txCursor) Next(ctx context.Context, max int) ([]replicate.Record, error) {
	n := c.s.sizes[c.i%len(c.s.sizes)] // ignores max: a transaction is whole
	c.i++
	var out []replicate.Record
	for len(out) < n {
		recs, err := c.Cursor.Next(ctx, n-len(out))
		if err != nil {
			return nil, err
		}
		out = append(out, recs...)
	}
	c.s.mu.Lock()
	c.s.ends[string(out[len(out)-1].Pos)] = true
	c.s.mu.Unlock()
	return out, nil
}

// Acknowledge checks that p is durable: the sink holds it.
func (c *txCursor) Acknowledge(p replicate.Position) {
	got, _ := c.s.sink.Position(context.Background())
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	if replicate.CompareBytes(p, got) > 0 {
		c.s.ackErrs = append(c.s.ackErrs, fmt.Sprintf("acknowledged %x while the sink is at %x", p, got))
	}
	if n := len(c.s.acks); n > 0 && replicate.CompareBytes(p, c.s.acks[n-1]) < 0 {
		c.s.ackErrs = append(c.s.ackErrs, fmt.Sprintf("acknowledged %x after %x", p, c.s.acks[n-1]))
	}
	c.s.acks = append(c.s.acks, p)
}

// batchSink records where every batch ended.
type batchSink struct {
	*memrepl.DurableSink
	mu   sync.Mutex
	ends []replicate.Position
}

func (s *batchSink) Apply(ctx context.Context, t fence.Token, b []replicate.Record) error {
	if err := s.DurableSink.Apply(ctx, t, b); err != nil {
		return err
	}
	if len(b) > 0 {
		s.mu.Lock()
		s.ends = append(s.ends, b[len(b)-1].Pos)
		s.mu.Unlock()
	}
	return nil
}

// TestAtomicChunksAndAcknowledge: a batch never ends inside a chunk of an
// AtomicChunker, even a chunk larger than MaxRecords or MaxBytes, and an
// Acknowledger hears only positions the DurableSink already holds, in
// order, up to the last one.
func TestAtomicChunksAndAcknowledge(t *testing.T) {
	const total = 3000
	src := &memrepl.Source{}
	fill(src, 0, total)
	inner := &memrepl.DurableSink{}
	sink := &batchSink{DurableSink: inner}
	ts := &txSource{Source: src, sizes: []int{1, 7, 150, 3, 64, 2, 40}, sink: inner, ends: map[string]bool{}}
	s := &replicate.Stream{Source: ts, Sink: sink, Store: memstore.New(), Key: "atomic",
		MaxRecords: 50, MaxBytes: 600, CheckpointRecords: 200, HeartbeatInterval: -1}
	stop := runStream(t, s, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// The last chunk may be cut short by the end of the source; wait for
	// what whole chunks cover.
	if err := inner.Wait(ctx, func(r []replicate.Record, _ []replicate.Heartbeat) bool { return len(r) >= total-150 }); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	sink.mu.Lock()
	defer sink.mu.Unlock()
	big := 0
	for i, e := range sink.ends {
		if !ts.ends[string(e)] {
			t.Fatalf("batch %d ends at %x, inside a chunk", i, e)
		}
	}
	for _, sz := range ts.sizes {
		if sz > s.MaxRecords {
			big++
		}
	}
	if big == 0 {
		t.Fatal("test needs a chunk larger than MaxRecords")
	}
	for _, e := range ts.ackErrs {
		t.Error(e)
	}
	if len(ts.acks) == 0 {
		t.Fatal("no acknowledgement")
	}
	last, _ := inner.Position(context.Background())
	if got := ts.acks[len(ts.acks)-1]; replicate.CompareBytes(got, last) != 0 {
		t.Errorf("last acknowledgement %x, sink at %x", got, last)
	}
}

// ackRecorder is a memrepl Source whose Cursors record what they are told
// is durable.
type ackRecorder struct {
	*memrepl.Source
	mu   sync.Mutex
	acks []replicate.Position
}

func (s *ackRecorder) Open(ctx context.Context, from replicate.Checkpoint) (replicate.Cursor, error) {
	c, err := s.Source.Open(ctx, from)
	if err != nil {
		return nil, err
	}
	return &ackCursor{Cursor: c, s: s}, nil
}

type ackCursor struct {
	replicate.Cursor
	s *ackRecorder
}

func (c *ackCursor) Acknowledge(p replicate.Position) {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	c.s.acks = append(c.s.acks, p)
}

// casAfter lets the first n CompareAndSwaps through (the claim) and fails
// the rest, as a store that went away would.
type casAfter struct {
	storage.Store
	n atomic.Int32
}

func (s *casAfter) CompareAndSwap(ctx context.Context, t fence.Token, key string, old storage.Version, v []byte) (storage.Version, error) {
	if s.n.Add(-1) < 0 {
		return 0, errors.New("store unreachable")
	}
	return s.Store.CompareAndSwap(ctx, t, key, old, v)
}

// With a Sink that keeps no position, what was applied is durable only
// once a checkpoint covering it is committed: a failed commit, or a
// refusal of a ConditionalSink, tells the Acknowledger nothing.
func TestAcknowledgeOnlyDurable(t *testing.T) {
	t.Run("failed checkpoint", func(t *testing.T) {
		src := &ackRecorder{Source: &memrepl.Source{}}
		fill(src.Source, 0, 100)
		store := &casAfter{Store: memstore.New()}
		store.n.Store(1)
		s := &replicate.Stream{Source: src, Sink: &memrepl.Sink{}, Store: store, Key: "k", MaxRecords: 10, CheckpointRecords: 20, HeartbeatInterval: -1}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := s.Run(ctx, 1); err == nil {
			t.Fatal("Run succeeded with a store that fails every checkpoint")
		}
		src.mu.Lock()
		defer src.mu.Unlock()
		if len(src.acks) > 0 {
			t.Errorf("acknowledged %x with no checkpoint committed and a sink that keeps nothing", src.acks)
		}
	})
	t.Run("refused apply", func(t *testing.T) {
		src := &ackRecorder{Source: &memrepl.Source{}}
		fill(src.Source, 0, 100)
		sink := &memrepl.DurableSink{}
		// Another writer under the same token moved the sink: every
		// ApplyAt of this Run is refused.
		s := &replicate.Stream{Source: src, Sink: movedSink{sink}, Store: memstore.New(), Key: "k", MaxRecords: 10, HeartbeatInterval: -1}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := s.Run(ctx, 1); !errors.Is(err, replicate.ErrPositionMismatch) {
			t.Fatalf("Run: %v, want ErrPositionMismatch", err)
		}
		src.mu.Lock()
		defer src.mu.Unlock()
		if len(src.acks) > 0 {
			t.Errorf("acknowledged %x, refused by the sink", src.acks)
		}
	})
}

// movedSink is a ConditionalSink that always finds the target elsewhere.
type movedSink struct{ *memrepl.DurableSink }

func (s movedSink) ApplyAt(ctx context.Context, t fence.Token, from replicate.Position, b []replicate.Record) error {
	return replicate.PositionMismatch(from, replicate.Position("elsewhere"))
}

// A target restored from a backup stands behind the checkpoint: the
// records in between are in the Source only. The Acknowledger must hear
// nothing the restored sink does not hold again — not the stored
// checkpoint the Run claims, not a checkpoint committed during the
// replay — or a Source that releases what it is told (a replication
// slot) would drop records the target still needs.
func TestAcknowledgeOnReplay(t *testing.T) {
	store, src := memstore.New(), &memrepl.Source{}
	fill(src, 0, 10)
	sink := &memrepl.DurableSink{}
	s := &replicate.Stream{Source: src, Sink: sink, Store: store, Key: "cp", HeartbeatInterval: -1}
	runTo(t, s, 1, sink, 10)
	backup := sink.Backup()
	fill(src, 10, 20)
	runTo(t, s, 2, sink, 30)
	fill(src, 30, 5)

	ts := &txSource{Source: src, sizes: []int{1, 4}, sink: backup, ends: map[string]bool{}}
	s2 := &replicate.Stream{Source: ts, Sink: backup, Store: store, Key: "cp", MaxRecords: 4, CheckpointRecords: 5, HeartbeatInterval: -1}
	runTo(t, s2, 3, backup, 35)
	checkExact(t, src, backup.Records())
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for _, e := range ts.ackErrs {
		t.Error(e)
	}
	if len(ts.acks) == 0 || !equalPos(ts.acks[0], memrepl.Pos(11)) {
		t.Errorf("acknowledgements %x, want the first at record 11 (the first replayed)", ts.acks)
	}
	if got := ts.acks[len(ts.acks)-1]; !equalPos(got, memrepl.Pos(35)) {
		t.Errorf("last acknowledgement %x, want record 35", got)
	}
}
