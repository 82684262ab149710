package replicate_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/lease/clock"
	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/memrepl"
	"github.com/hakit/hakit/storage"
	"github.com/hakit/hakit/storage/memstore"
)

func newTestStream(store storage.Store, key string) *replicate.Stream {
	return &replicate.Stream{
		Source:            &memrepl.Source{},
		Sink:              &memrepl.DurableSink{},
		Store:             store,
		Key:               key,
		HeartbeatInterval: -1,
	}
}

func fill(src *memrepl.Source, from, n int) {
	for i := from; i < from+n; i++ {
		src.Append([]byte(fmt.Sprintf("record-%06d", i)))
	}
}

// runStream runs s in the background and returns a function that stops it
// and returns Run's error.
func runStream(t *testing.T, s *replicate.Stream, tok fence.Token) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, tok) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() { cancel(); err = <-done })
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

type waiter interface {
	Wait(context.Context, func([]replicate.Record, []replicate.Heartbeat) bool) error
}

func waitRecords(t *testing.T, sink waiter, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := sink.Wait(ctx, func(r []replicate.Record, _ []replicate.Heartbeat) bool { return len(r) >= n })
	if err != nil {
		t.Fatalf("waiting for %d records: %v", n, err)
	}
}

func loadCP(t *testing.T, store storage.Store, key string) replicate.Checkpoint {
	t.Helper()
	cp, _, err := replicate.LoadCheckpoint(context.Background(), store, key)
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

func checkExact(t *testing.T, src *memrepl.Source, got []replicate.Record) {
	t.Helper()
	want := src.Records()
	if len(got) != len(want) {
		t.Fatalf("sink has %d records, source %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i].Data, want[i].Data) || !bytes.Equal(got[i].Pos, want[i].Pos) {
			t.Fatalf("record %d: sink has %q at %x, source %q at %x", i, got[i].Data, got[i].Pos, want[i].Data, want[i].Pos)
		}
	}
}

func TestValidate(t *testing.T) {
	base := func() *replicate.Stream { return newTestStream(memstore.New(), "k") }
	cases := []struct {
		name  string
		edit  func(*replicate.Stream)
		field string
	}{
		{"no source", func(s *replicate.Stream) { s.Source = nil }, "Source"},
		{"no sink", func(s *replicate.Stream) { s.Sink = nil }, "Sink"},
		{"no store", func(s *replicate.Stream) { s.Store = nil }, "Store"},
		{"bad key", func(s *replicate.Stream) { s.Key = "" }, "Key"},
		{"negative max records", func(s *replicate.Stream) { s.MaxRecords = -1 }, "MaxRecords"},
		{"negative max bytes", func(s *replicate.Stream) { s.MaxBytes = -1 }, "MaxBytes"},
		{"negative wait", func(s *replicate.Stream) { s.MaxWait = -time.Second }, "MaxWait"},
		{"wait over interval", func(s *replicate.Stream) { s.MaxWait = 2 * time.Second }, "MaxWait"},
		{"no order", func(s *replicate.Stream) { s.Source = noCompare{s.Source} }, "Compare"},
	}
	if err := base().Validate(); err != nil {
		t.Fatalf("default stream: %v", err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := base()
			tc.edit(s)
			err := s.Validate()
			if !errors.Is(err, replicate.ErrConfig) || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("Validate = %v; want ErrConfig naming %s", err, tc.field)
			}
		})
	}
}

type noCompare struct{ replicate.Source }

func TestRunRejectsZeroTokenAndSecondRun(t *testing.T) {
	s := newTestStream(memstore.New(), "k")
	if err := s.Run(context.Background(), 0); !errors.Is(err, fence.ErrNoToken) {
		t.Fatalf("Run(0) = %v, want ErrNoToken", err)
	}
	stop := runStream(t, s, 1)
	fill(s.Source.(*memrepl.Source), 0, 1)
	waitRecords(t, s.Sink.(waiter), 1) // the first Run is certainly running now
	if err := s.Run(context.Background(), 1); !errors.Is(err, replicate.ErrRunning) {
		t.Fatalf("concurrent Run = %v, want ErrRunning", err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// A stream copies everything, checkpoints on a clean stop, and the next
// term resumes after the checkpoint without re-applying anything.
func TestStreamResumesAfterCleanStop(t *testing.T) {
	store := memstore.New()
	src := &memrepl.Source{}
	sink := &memrepl.Sink{} // plain: only the checkpoint prevents replay
	s := &replicate.Stream{Source: src, Sink: sink, Store: store, Key: "cp", MaxRecords: 7, CheckpointRecords: -1, CheckpointInterval: -1, HeartbeatInterval: -1}
	fill(src, 0, 100)
	stop := runStream(t, s, 1)
	waitRecords(t, sink, 100)
	if err := stop(); err != nil {
		t.Fatalf("clean stop: %v", err)
	}
	cp := loadCP(t, store, "cp")
	if !bytes.Equal(cp.Pos, memrepl.Pos(100)) || cp.Token != 1 {
		t.Fatalf("final checkpoint %x token %d, want %x token 1", cp.Pos, cp.Token, memrepl.Pos(100))
	}
	fill(src, 100, 50)
	stop = runStream(t, s, 2)
	waitRecords(t, sink, 150)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkExact(t, src, sink.Records())
	st := s.Stats()
	if st.Records != 150 || st.Resumes != 2 || st.Checkpoints != 2 || st.Batches < 150/7 {
		t.Fatalf("stats %+v", st)
	}
}

// The newer of checkpoint and sink position wins; with State in the
// checkpoint the stream reopens at the checkpoint and skips what the sink
// has.
func TestStreamResumesFromNewerOfCheckpointAndSink(t *testing.T) {
	ctx := context.Background()
	for _, withState := range []bool{false, true} {
		t.Run(fmt.Sprintf("state=%v", withState), func(t *testing.T) {
			store := memstore.New()
			mem := &memrepl.Source{}
			fill(mem, 0, 60)
			src := &statefulSource{Source: mem, withState: withState}
			sink := &memrepl.DurableSink{}
			// The sink already has 40 records; the checkpoint says 10.
			if err := sink.Apply(ctx, 1, mem.Records()[:40]); err != nil {
				t.Fatal(err)
			}
			cp := replicate.Checkpoint{Pos: memrepl.Pos(10), Token: 1}
			if withState {
				cp.State = []byte("state@10")
			}
			if _, err := store.Put(ctx, 1, "cp", replicate.EncodeCheckpoint(cp)); err != nil {
				t.Fatal(err)
			}
			s := &replicate.Stream{Source: src, Sink: sink, Store: store, Key: "cp", HeartbeatInterval: -1}
			stop := runStream(t, s, 2)
			waitRecords(t, sink, 60)
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			checkExact(t, mem, sink.Records())
			opened := src.opened()
			want := memrepl.Pos(40)
			if withState {
				want = memrepl.Pos(10)
			}
			if len(opened) != 1 || !bytes.Equal(opened[0].Pos, want) {
				t.Fatalf("source opened at %+v, want at %x", opened, want)
			}
			if withState && string(opened[0].State) != "state@10" {
				t.Fatalf("source opened with state %q, want the checkpoint's", opened[0].State)
			}
			got := loadCP(t, store, "cp")
			if !bytes.Equal(got.Pos, memrepl.Pos(60)) {
				t.Fatalf("checkpoint at %x, want %x", got.Pos, memrepl.Pos(60))
			}
			if withState && string(got.State) != "state@60" {
				t.Fatalf("checkpoint state %q, want the cursor's state@60", got.State)
			}
		})
	}
}

// statefulSource wraps a memrepl.Source with an opaque State that names
// the position, and records where it was opened.
type statefulSource struct {
	*memrepl.Source
	withState bool
	mu        sync.Mutex
	opens     []replicate.Checkpoint
}

func (s *statefulSource) Open(ctx context.Context, from replicate.Checkpoint) (replicate.Cursor, error) {
	s.mu.Lock()
	s.opens = append(s.opens, from)
	s.mu.Unlock()
	c, err := s.Source.Open(ctx, from)
	if err != nil || !s.withState {
		return c, err
	}
	return stateCursor{c}, nil
}

func (s *statefulSource) opened() []replicate.Checkpoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]replicate.Checkpoint(nil), s.opens...)
}

type stateCursor struct{ replicate.Cursor }

func (c stateCursor) Checkpoint() replicate.Checkpoint {
	cp := c.Cursor.Checkpoint()
	n, _ := memrepl.DecodePos(cp.Pos)
	cp.State = []byte(fmt.Sprintf("state@%d", n))
	return cp
}

// Batches respect MaxRecords and MaxBytes; a record bigger than MaxBytes
// goes alone.
func TestStreamBatchLimits(t *testing.T) {
	src := &memrepl.Source{}
	for i := 0; i < 50; i++ {
		src.Append(bytes.Repeat([]byte{'x'}, 10))
	}
	src.Append(bytes.Repeat([]byte{'y'}, 100))
	sink := &batchRecorder{}
	s := &replicate.Stream{Source: src, Sink: sink, Store: memstore.New(), Key: "cp", MaxRecords: 8, MaxBytes: 35, HeartbeatInterval: -1}
	stop := runStream(t, s, 1)
	waitRecords(t, &sink.DurableSink, 51)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for i, b := range sink.sizes() {
		if b[0] > 8 || (b[1] > 35 && b[0] != 1) {
			t.Fatalf("batch %d has %d records, %d bytes; limits 8 and 35", i, b[0], b[1])
		}
	}
	checkExact(t, src, sink.Records())
}

type batchRecorder struct {
	memrepl.DurableSink
	mu      sync.Mutex
	batches [][2]int
}

func (b *batchRecorder) Apply(ctx context.Context, t fence.Token, batch []replicate.Record) error {
	n := 0
	for _, r := range batch {
		n += len(r.Data)
	}
	b.mu.Lock()
	b.batches = append(b.batches, [2]int{len(batch), n})
	b.mu.Unlock()
	return b.DurableSink.Apply(ctx, t, batch)
}

func (b *batchRecorder) sizes() [][2]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([][2]int(nil), b.batches...)
}

// On the fake clock: a partial batch waits MaxWait; the time policy
// checkpoints an idle stream with progress pending; heartbeats flow when
// idle and reach the sink in order.
func TestStreamTimersOnFakeClock(t *testing.T) {
	ctx := context.Background()
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	store := memstore.New()
	src := &memrepl.Source{}
	sink := &memrepl.Sink{}
	s := &replicate.Stream{
		Source: src, Sink: sink, Store: store, Key: "cp", Clock: clk,
		MaxRecords: 100, MaxWait: 50 * time.Millisecond,
		CheckpointRecords: -1, CheckpointInterval: time.Second, HeartbeatInterval: 300 * time.Millisecond,
	}
	stop := runStream(t, s, 1)
	// Armed: checkpoint and heartbeat timers.
	if err := clk.WaitForTimers(ctx, 2); err != nil {
		t.Fatal(err)
	}
	src.Append([]byte("a"), []byte("b"), []byte("c")) // one Append: one chunk
	// The partial batch arms the wait timer; nothing is applied before it.
	if err := clk.WaitForTimers(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if n := sink.Len(); n != 0 {
		t.Fatalf("partial batch applied before MaxWait: %d records", n)
	}
	clk.Advance(50 * time.Millisecond)
	waitRecords(t, sink, 3)
	if cp := loadCP(t, store, "cp"); cp.Pos != nil {
		t.Fatalf("checkpoint written before the interval: %x", cp.Pos)
	}
	// Idle: heartbeats at 50+300 ms and 650 ms, checkpoint at 1 s.
	clk.Advance(300 * time.Millisecond)
	waitHeartbeats(t, sink, 1)
	clk.Advance(300 * time.Millisecond)
	waitHeartbeats(t, sink, 2)
	if err := clk.WaitForTimers(ctx, 2); err != nil {
		t.Fatal(err)
	}
	clk.Advance(400 * time.Millisecond)
	deadline := time.Now().Add(10 * time.Second)
	for loadCP(t, store, "cp").Pos == nil {
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint after the interval")
		}
		time.Sleep(time.Millisecond) // polling with a deadline
	}
	cp := loadCP(t, store, "cp")
	if !bytes.Equal(cp.Pos, memrepl.Pos(3)) || !cp.Time.Equal(clk.Now()) {
		t.Fatalf("checkpoint %x at %v, want %x at %v", cp.Pos, cp.Time, memrepl.Pos(3), clk.Now())
	}
	hbs := sink.Heartbeats()
	if !bytes.Equal(hbs[0].Pos, memrepl.Pos(3)) || !hbs[1].Time.After(hbs[0].Time) {
		t.Fatalf("heartbeats %+v", hbs)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.Heartbeats < 2 || st.Checkpoints != 1 || !st.LastCheckpoint.Equal(cp.Time) || st.Records != 3 {
		t.Fatalf("stats %+v", st)
	}
}

func waitHeartbeats(t *testing.T, sink waiter, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := sink.Wait(ctx, func(_ []replicate.Record, h []replicate.Heartbeat) bool { return len(h) >= n }); err != nil {
		t.Fatalf("waiting for %d heartbeats: %v", n, err)
	}
}

// Stats may be read while the stream runs (run with -race).
func TestStatsConcurrentReads(t *testing.T) {
	src := &memrepl.Source{}
	sink := &memrepl.Sink{}
	s := &replicate.Stream{Source: src, Sink: sink, Store: memstore.New(), Key: "cp", MaxRecords: 50, CheckpointRecords: 100, HeartbeatInterval: -1}
	stop := runStream(t, s, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for s.Stats().Records < 1000 {
			_ = s.Stats().LastCheckpointPos
		}
	}()
	fill(src, 0, 1000)
	<-done
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Checkpoints < 2 || st.Bytes != 1000*uint64(len("record-000000")) {
		t.Fatalf("stats %+v", st)
	}
}
