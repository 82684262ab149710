package raftlease

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/hakit/hakit/lease"
)

// failingLog is an in-memory log whose writes can be made to fail, as a
// full or broken disk would.
type failingLog struct {
	*memLog
	fail atomic.Bool
}

var errDisk = errors.New("disk on fire")

func (f *failingLog) Save(hs *pb.HardState, ents []*pb.Entry, snap *pb.Snapshot) error {
	if f.fail.Load() {
		return errDisk
	}
	return f.memLog.Save(hs, ents, snap)
}

// TestDiskFailureStops: a member whose log cannot be written stops: its
// term ends, and every call fails with an error naming the cause.
func TestDiskFailureStops(t *testing.T) {
	db := &failingLog{memLog: newMemLog()}
	net := newMemNet()
	g, err := start(context.Background(), Config{
		ID: "a", Peers: map[string]string{"a": ""}, Transport: net.transport("a"),
		TickInterval: 10 * time.Millisecond, DataDir: "unused", Logger: testLogger(t),
	}, db)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	ctx := testCtx(t, 10*time.Second)
	term, err := g.Campaign(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Store().Put(ctx, term.Token(), "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	db.fail.Store(true)
	_, err = g.Store().Put(ctx, term.Token(), "k", []byte("w"))
	if !errors.Is(err, ErrStopped) || !errors.Is(err, errDisk) || !errors.Is(err, lease.ErrClosed) {
		t.Fatalf("Put after a disk failure: %v, want ErrStopped wrapping the cause and lease.ErrClosed", err)
	}
	<-term.Done()
	if !errors.Is(term.Err(), lease.ErrLost) || !errors.Is(term.Err(), errDisk) {
		t.Fatalf("term after a disk failure: %v", term.Err())
	}
	if _, err := g.Campaign(ctx); !errors.Is(err, ErrStopped) {
		t.Fatalf("Campaign after a disk failure: %v", err)
	}
	if _, err := g.Store().Get(ctx, "k"); !errors.Is(err, ErrStopped) {
		t.Fatalf("Get after a disk failure: %v", err)
	}
}

// TestCloseCutOff: Close of a leader cut off from the others waited about
// 0.9 x the election timeout for a hand-over that cannot happen. Now it
// returns after CloseTimeout (plus a disk sync in progress), its Term's
// Done closed before it returns. The election timeout here is 2 s, so
// the old wait could not pass for the new.
func TestCloseCutOff(t *testing.T) {
	c := newCluster(t, 3, func(cfg *Config) { cfg.TickInterval, cfg.ElectionTicks = 100*time.Millisecond, 21 })
	ctx := testCtx(t, 30*time.Second)
	term, err := c.groups["a"].Campaign(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.isolate("a", true)
	start := time.Now()
	c.stop("a")
	took := time.Since(start)
	select {
	case <-term.Done():
	default:
		t.Fatal("Close returned with the Term's Done open")
	}
	if !errors.Is(term.Err(), lease.ErrResigned) {
		t.Fatalf("Term.Err after Close = %v, want lease.ErrResigned", term.Err())
	}
	t.Logf("Close of a cut-off leader took %v (CloseTimeout %v, election timeout 2s)", took, CloseTimeout)
	if took > time.Second {
		t.Fatalf("Close of a cut-off leader took %v", took)
	}
}

// TestCloseHandsOver: Close of a healthy leader hands Raft leadership to
// another member, which then leads without waiting for an election
// timeout.
func TestCloseHandsOver(t *testing.T) {
	c := newCluster(t, 3, func(cfg *Config) { cfg.TickInterval, cfg.ElectionTicks = 100*time.Millisecond, 31 })
	ctx := testCtx(t, 30*time.Second)
	if _, err := c.groups["a"].Campaign(ctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c.stop("a")
	lead := c.raftLeader(ctx)
	took := time.Since(start)
	t.Logf("%s leads %v after a's Close (election timeout 3 s)", lead.ID(), took)
	if took > 2*time.Second {
		t.Fatalf("no hand-over: a new leader only after %v", took)
	}
}
