package raftlease

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/hakit/hakit/lease"
	"github.com/hakit/hakit/lease/clock"
)

// memNet is an in-process network of Transports: what ha/hatest plugs
// in to run a group on a simulated network.
type memNet struct {
	mu    sync.Mutex
	nodes map[uint64]Handler
	cut   map[uint64]bool
}

type memTransport struct {
	n    *memNet
	self uint64
}

func newMemNet() *memNet { return &memNet{nodes: map[uint64]Handler{}, cut: map[uint64]bool{}} }

func (n *memNet) transport(id string) *memTransport { return &memTransport{n: n, self: RaftID(id)} }

func (t *memTransport) Start(h Handler) error {
	t.n.mu.Lock()
	defer t.n.mu.Unlock()
	t.n.nodes[t.self] = h
	return nil
}

func (t *memTransport) Send(m *pb.Message) {
	t.n.mu.Lock()
	h, cut := t.n.nodes[m.GetTo()], t.n.cut[t.self] || t.n.cut[m.GetTo()]
	t.n.mu.Unlock()
	if h == nil || cut {
		return
	}
	h.Receive(m)
}

func (t *memTransport) SetPeer(uint64, string) {}
func (t *memTransport) RemovePeer(uint64)      {}
func (t *memTransport) Close() error {
	t.n.mu.Lock()
	defer t.n.mu.Unlock()
	delete(t.n.nodes, t.self)
	return nil
}

// TestSimulatedClock runs a group on a clock.Fake and an in-process
// network: elections, writes and the self-fence deadline all follow
// virtual time.
func TestSimulatedClock(t *testing.T) {
	fake := clock.NewFake(time.Unix(1e9, 0))
	net := newMemNet()
	peers := map[string]string{"a": "", "b": "", "c": ""}
	groups := map[string]*Group{}
	for _, id := range []string{"a", "b", "c"} {
		// The log in memory: nothing here is about disks.
		g, err := start(context.Background(), Config{
			ID: id, Peers: peers, Clock: fake, Transport: net.transport(id),
			Logger: testLogger(t).With("m", id), DataDir: "unused",
		}, newMemLog())
		if err != nil {
			t.Fatal(err)
		}
		groups[id] = g
		defer g.Close()
	}
	// Move virtual time in 10 ms steps while the test waits.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var moved sync.WaitGroup
	moved.Add(1)
	go func() {
		defer moved.Done()
		for ctx.Err() == nil {
			fake.Advance(10 * time.Millisecond)
			time.Sleep(time.Millisecond)
		}
	}()
	defer moved.Wait()
	defer cancel()

	wctx := testCtx(t, 30*time.Second)
	ta, err := groups["a"].Campaign(wctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := groups["a"].Store().Put(wctx, ta.Token(), "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	won := make(chan lease.Term, 1)
	go func() {
		tb, err := groups["b"].Campaign(wctx)
		if err == nil {
			won <- tb
		}
	}()
	start := fake.Now()
	net.mu.Lock()
	net.cut[RaftID("a")] = true
	net.mu.Unlock()
	var tb lease.Term
	select {
	case tb = <-won:
	case <-wctx.Done():
		t.Fatal("b did not take over")
	}
	select {
	case <-ta.Done():
	default:
		t.Fatal("b won while a's term was open")
	}
	if !errors.Is(ta.Err(), lease.ErrLost) {
		t.Fatalf("a's term: %v", ta.Err())
	}
	took := fake.Now().Sub(start)
	t.Logf("b took over after %v of virtual time", took)
	if took > 3*time.Second {
		t.Fatalf("failover took %v of virtual time, beyond 2 election timeouts plus slack", took)
	}
	it, err := groups["b"].Store().Get(wctx, "k")
	if err != nil || string(it.Value) != "v" {
		t.Fatalf("Get after failover = %q, %v", it.Value, err)
	}
	_ = tb
}

// TestSelfFenceDeadline: on virtual time, a holder cut off from the
// others keeps its term until exactly its self-fence deadline, which is
// at most the fence window after the last acknowledgement, and no later.
func TestSelfFenceDeadline(t *testing.T) {
	fake := clock.NewFake(time.Unix(1e9, 0))
	net := newMemNet()
	peers := map[string]string{"a": "", "b": "", "c": ""}
	groups := map[string]*Group{}
	for _, id := range []string{"a", "b", "c"} {
		g, err := start(context.Background(), Config{
			ID: id, Peers: peers, Clock: fake, Transport: net.transport(id),
			Logger: testLogger(t).With("m", id), DataDir: "unused",
		}, newMemLog())
		if err != nil {
			t.Fatal(err)
		}
		groups[id] = g
		defer g.Close()
	}
	ctx, cancel := context.WithCancel(t.Context())
	var moved sync.WaitGroup
	moved.Add(1)
	go func() {
		defer moved.Done()
		for ctx.Err() == nil {
			fake.Advance(10 * time.Millisecond)
			time.Sleep(time.Millisecond)
		}
	}()
	term, err := groups["a"].Campaign(testCtx(t, 30*time.Second))
	cancel()
	moved.Wait()
	if err != nil {
		t.Fatal(err)
	}
	ta := term.(*Term)
	net.mu.Lock()
	net.cut[RaftID("a")] = true
	net.mu.Unlock()
	cfg := groups["a"].Config()
	window := cfg.fenceWindow()
	// An acknowledgement already on its way when the link was cut may
	// still move the deadline; let it land (virtual time stands still).
	time.Sleep(50 * time.Millisecond)
	deadline := ta.Deadline()
	now := fake.Now()
	if !deadline.After(now) || deadline.Sub(now) > window {
		t.Fatalf("deadline %v after now, want in (0, %v]", deadline.Sub(now), window)
	}
	fake.Set(deadline.Add(-time.Millisecond))
	select {
	case <-ta.Done():
		t.Fatalf("term ended %v before its deadline: %v", time.Millisecond, ta.Err())
	case <-time.After(50 * time.Millisecond):
	}
	fake.Set(deadline)
	select {
	case <-ta.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("term still open at its deadline")
	}
	if !errors.Is(ta.Err(), lease.ErrLost) {
		t.Fatalf("Err = %v, want lease.ErrLost", ta.Err())
	}
}
