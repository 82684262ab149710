package raftnet

import (
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/hakit/hakit/lease/clock"
	"github.com/hakit/hakit/lease/raftlease"
)

// inbox is a Handler that keeps what it receives.
type inbox struct {
	mu  sync.Mutex
	got []uint64 // Index of each message received
}

func (b *inbox) Receive(m *pb.Message) {
	b.mu.Lock()
	b.got = append(b.got, m.GetIndex())
	b.mu.Unlock()
}
func (b *inbox) Unreachable(uint64)        {}
func (b *inbox) SnapshotDone(uint64, bool) {}

func (b *inbox) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.got)
}

func msg(to string, i uint64) *pb.Message {
	id := raftlease.RaftID(to)
	return &pb.Message{To: &id, Index: &i}
}

func TestCutsAreOneWay(t *testing.T) {
	n := New(1, nil)
	a, b := n.Transport("a"), n.Transport("b")
	ia, ib := &inbox{}, &inbox{}
	if err := a.Start(ia); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(ib); err != nil {
		t.Fatal(err)
	}
	n.Cut("a", "b")
	a.Send(msg("b", 1))
	b.Send(msg("a", 2))
	if ib.count() != 0 || ia.count() != 1 {
		t.Fatalf("with a->b cut: b got %d, a got %d; want 0 and 1", ib.count(), ia.count())
	}
	n.Cut("a", "b")
	n.Restore("a", "b")
	a.Send(msg("b", 3))
	if ib.count() != 0 {
		t.Fatal("a->b works after one Restore of two Cuts")
	}
	n.Restore("a", "b")
	a.Send(msg("b", 4))
	if ib.count() != 1 {
		t.Fatal("a->b still cut after both Restores")
	}
	if sent, lost := n.Stats(); sent != 4 || lost != 2 {
		t.Fatalf("Stats = %d sent, %d lost; want 4 and 2", sent, lost)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	a.Send(msg("b", 5))
	if ib.count() != 1 {
		t.Fatal("a closed member received a message")
	}
}

func TestDelayAndLossOnFakeClock(t *testing.T) {
	f := clock.NewFake(time.Unix(0, 0))
	n := New(7, f)
	a, b := n.Transport("a"), n.Transport("b")
	ib := &inbox{}
	if err := a.Start(&inbox{}); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(ib); err != nil {
		t.Fatal(err)
	}
	n.SetDelay(100 * time.Millisecond)
	for i := range uint64(50) {
		a.Send(msg("b", i))
	}
	if ib.count() != 0 {
		t.Fatal("a delayed message arrived before its time")
	}
	f.Advance(100 * time.Millisecond)
	if ib.count() != 50 {
		t.Fatalf("%d of 50 delayed messages arrived", ib.count())
	}
	ordered := true
	for i := 1; i < len(ib.got); i++ {
		ordered = ordered && ib.got[i] > ib.got[i-1]
	}
	if ordered {
		t.Fatal("random delays did not reorder 50 messages")
	}
	n.SetDelay(0)
	n.SetLoss(0.5)
	for i := range uint64(200) {
		a.Send(msg("b", 100+i))
	}
	if got := ib.count() - 50; got < 60 || got > 140 {
		t.Fatalf("%d of 200 messages arrived with 50%% loss", got)
	}
}
