package raftlease

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/hakit/hakit/lease/raftlease/raftlog"
)

func TestDecideProbe(t *testing.T) {
	const b, c = 2, 3
	none := probeAnswer{}
	fresh := probeAnswer{hasLog: true, newLog: true}
	old := probeAnswer{hasLog: true}
	leaderNew := probeAnswer{hasLog: true, leader: true, voter: true}
	leaderKnows := probeAnswer{hasLog: true, leader: true, voter: true, logged: true}
	leaderRemoved := probeAnswer{hasLog: true, leader: true, logged: true}
	for _, tc := range []struct {
		name    string
		join    bool
		answers map[uint64]probeAnswer
		want    probeDecision
	}{
		{"nobody answered", false, nil, probeWait},
		{"one of two answered", false, map[uint64]probeAnswer{b: none}, probeWait},
		{"everyone new: bootstrap", false, map[uint64]probeAnswer{b: none, c: none}, probeBootstrap},
		{"a peer bootstrapped already: bootstrap too", false, map[uint64]probeAnswer{b: fresh, c: none}, probeBootstrap},
		{"joining never bootstraps", true, map[uint64]probeAnswer{b: none, c: none}, probeWait},
		{"a peer with a real log, no leader: wait", false, map[uint64]probeAnswer{b: old, c: none}, probeWait},
		{"the leader does not count on this member: join", false, map[uint64]probeAnswer{b: leaderNew}, probeJoin},
		{"the leader, joining", true, map[uint64]probeAnswer{b: old, c: leaderNew}, probeJoin},
		{"the leader counts on a log this member lost: refuse", false, map[uint64]probeAnswer{b: old, c: leaderKnows}, probeRefuse},
		{"even when asked to join", true, map[uint64]probeAnswer{c: leaderKnows}, probeRefuse},
		{"not a voter any more (removed): join", false, map[uint64]probeAnswer{c: leaderRemoved}, probeJoin},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, _ := decideProbe(tc.join, []uint64{b, c}, tc.answers); got != tc.want {
				t.Fatalf("decideProbe = %d, want %d", got, tc.want)
			}
		})
	}
}

func FuzzProbeAnswer(f *testing.F) {
	f.Add(encodeProbeAnswer(probeAnswer{hasLog: true, leader: true, voter: true, logged: true}))
	f.Add(encodeProbeAnswer(probeAnswer{}))
	f.Add(encodeProbeQuestion())
	f.Add([]byte("HKPR\x01\xff"))
	f.Fuzz(func(t *testing.T, ctx []byte) {
		a, err := decodeProbeAnswer(ctx)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		if got := encodeProbeAnswer(a); string(got) != string(ctx) {
			t.Fatalf("accepted answer %x re-encodes as %x", ctx, got)
		}
	})
}

// wipe empties member id's data directory, as a replaced disk would.
func (c *cluster) wipe(id string) {
	c.t.Helper()
	if err := os.RemoveAll(c.dirs[id]); err != nil {
		c.t.Fatal(err)
	}
	if err := os.MkdirAll(c.dirs[id], 0o750); err != nil {
		c.t.Fatal(err)
	}
}

// TestWipedDisk: a member restarted with an empty data directory used to
// bootstrap a second log, and the leader's first heartbeat made it panic.
// Now it asks its peers, learns from the leader that the group counts on
// the log it lost, and stops with ErrWipedMember naming the procedure;
// the process stays up and the others keep serving. The procedure
// (remove, wipe, add, start) then brings it back, caught up from a
// snapshot, with every acknowledged write.
func TestWipedDisk(t *testing.T) {
	if !inChild(t) {
		return
	}
	c := newCluster(t, 3, func(cfg *Config) { cfg.SnapshotEntries, cfg.CompactionMargin = 20, 5 })
	ctx := testCtx(t, 60*time.Second)
	a := c.groups["a"]
	term, err := a.Campaign(ctx)
	if err != nil {
		t.Fatal(err)
	}
	acked := writeKeys(t, a, term.Token(), "before", 50)
	eventually(t, 10*time.Second, "the leader to record that b holds a log", func() error {
		var logged bool
		if err := a.do(ctx, func() { logged = a.sm.logged[RaftID("b")] }); err != nil {
			return err
		}
		if !logged {
			return errors.New("not yet")
		}
		return nil
	})

	c.stop("b")
	c.wipe("b")
	b := c.start("b")
	select {
	case <-b.Stopped():
	case <-ctx.Done():
		t.Fatal("the wiped member did not stop")
	}
	err = b.Err()
	if !errors.Is(err, ErrWipedMember) || !errors.Is(err, ErrStopped) || !strings.Contains(err.Error(), `RemoveMember("b")`) {
		t.Fatalf("the wiped member stopped with %v; want ErrWipedMember naming the procedure", err)
	}
	t.Logf("refused: %v", err)
	for k, v := range writeKeys(t, a, term.Token(), "while-refused", 30) {
		acked[k] = v
	}
	checkKeys(t, c.groups["c"], acked)
	c.stop("b")
	l, err := raftlog.Open(c.dirs["b"])
	if err != nil {
		t.Fatal(err)
	}
	if last, _ := l.LastIndex(); last != 0 {
		t.Fatalf("the refused member wrote a log up to index %d", last)
	}
	l.Close()

	// The procedure: remove, wipe (done), add, start.
	if err := a.RemoveMember(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	for k, v := range writeKeys(t, a, term.Token(), "two-members", 30) {
		acked[k] = v
	}
	if err := a.AddMember(ctx, "b", c.peers["b"]); err != nil {
		t.Fatal(err)
	}
	if first, _ := a.db.FirstIndex(); first <= 1 {
		t.Fatalf("the leader's log starts at %d: b could catch up without a snapshot", first)
	}
	b = c.start("b")
	eventually(t, 20*time.Second, "b to be back", func() error {
		if got := memberIDs(t, a); !slices.Equal(got, []string{"a", "b", "c"}) {
			return fmt.Errorf("members %v", got)
		}
		var applied, snap uint64
		if err := b.do(ctx, func() { applied, snap = b.applied, b.snapIndex }); err != nil {
			return err
		}
		if snap == 0 || applied == 0 {
			return fmt.Errorf("b applied %d, snapshot %d", applied, snap)
		}
		return nil
	})
	checkKeys(t, b, acked)
	// b is a full voter again: with c down, a and b carry the group.
	c.stop("c")
	writeKeys(t, a, term.Token(), "after", 5)
	t.Logf("b is back with all %d acknowledged writes; a and b commit without c", len(acked))
}

// TestNewGroupWaitsForEveryMember: members with empty data directories
// create a new group only once every member in Peers has answered that it
// is new too; a member that starts later joins the group they made.
func TestNewGroupWaitsForEveryMember(t *testing.T) {
	c := newCluster(t, 3, nil, "a", "b")
	ctx := testCtx(t, 30*time.Second)
	a := c.groups["a"]
	eventually(t, 10*time.Second, "a to have asked b", func() error {
		var answered bool
		if err := a.do(ctx, func() { _, answered = a.probe.answers[RaftID("b")] }); err != nil {
			return err
		}
		if !answered {
			return errors.New("no answer from b yet")
		}
		return nil
	})
	var probing bool
	var last uint64
	if err := a.do(ctx, func() { probing, last = a.probe != nil, a.lastIndex() }); err != nil {
		t.Fatal(err)
	}
	if !probing || last != 0 {
		t.Fatalf("a bootstrapped without c (probing %v, last index %d)", probing, last)
	}
	g := c.start("c")
	term, err := a.Campaign(ctx)
	if err != nil {
		t.Fatal(err)
	}
	acked := writeKeys(t, a, term.Token(), "k", 10)
	checkKeys(t, g, acked)
}

// TestAddedMemberStartsWithoutJoin: a member added with AddMember and
// started without Join (the operator forgot it) asks its peers, learns
// from the leader that it is new, and joins rather than bootstrapping.
func TestAddedMemberStartsWithoutJoin(t *testing.T) {
	c := newCluster(t, 3, nil)
	ctx := testCtx(t, 30*time.Second)
	a := c.groups["a"]
	term, err := a.Campaign(ctx)
	if err != nil {
		t.Fatal(err)
	}
	acked := writeKeys(t, a, term.Token(), "k", 10)
	c.addSlot("d")
	if err := a.AddMember(ctx, "d", c.peers["d"]); err != nil {
		t.Fatal(err)
	}
	d := c.start("d") // Join not set
	checkKeys(t, d, acked)
	eventually(t, 10*time.Second, "d in the membership", func() error {
		if got := memberIDs(t, d); !slices.Equal(got, []string{"a", "b", "c", "d"}) {
			return fmt.Errorf("members %v", got)
		}
		return nil
	})
}

// TestProbeMessagesNeverReachRaft: a question or answer of the start-up
// probe is not a heartbeat to Raft, and a member that has decided ignores
// late answers.
func TestProbeMessagesNeverReachRaft(t *testing.T) {
	m := &pb.Message{Type: pb.MsgHeartbeat.Enum(), Term: new(uint64(0)), Context: encodeProbeQuestion()}
	if !isProbe(m) {
		t.Fatal("a question is not recognised")
	}
	m.Term = new(uint64(3))
	if isProbe(m) {
		t.Fatal("a heartbeat of term 3 taken for a question")
	}
}
