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
