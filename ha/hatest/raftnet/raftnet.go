// Package raftnet is an in-process network for the members of a
// raftlease group, with the faults of ha/hatest's simulated world: per-link
// cuts in one direction or both, isolation of a member, message loss and
// delays that reorder. Plug a Network's Transport into each member's
// raftlease.Config to run a whole group in one process under faults.
//
// It lives apart from package hatest so that users of hatest who do not
// use the Raft backend do not compile go.etcd.io/raft.
//
// Messages are delivered on the Network's clock: with the real clock
// (the default) a delayed message is delivered by a timer goroutine, so a
// run is not reproducible from the seed, which only drives the loss and
// delay draws.
package raftnet

import (
	"math/rand"
	"sync"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/hakit/hakit/lease/clock"
	"github.com/hakit/hakit/lease/raftlease"
)

// Network connects the Transports made by Transport. It is safe for
// concurrent use.
type Network struct {
	clk clock.Clock

	mu       sync.Mutex
	rng      *rand.Rand
	handlers map[uint64]raftlease.Handler
	cut      map[[2]uint64]int // (from, to) -> depth of overlapping cuts
	loss     float64
	maxDelay time.Duration
	sent     uint64
	dropped  uint64
}

// New returns a Network with no faults, drawing losses and delays from
// seed, on clk (nil: the real clock).
func New(seed int64, clk clock.Clock) *Network {
	if clk == nil {
		clk = clock.Real()
	}
	return &Network{clk: clk, rng: rand.New(rand.NewSource(seed)), handlers: map[uint64]raftlease.Handler{}, cut: map[[2]uint64]int{}}
}

// Transport returns the Transport of member id, for its
// raftlease.Config.Transport. A member restarted with the same ID gets a
// new Transport that replaces the old one when started.
func (n *Network) Transport(id string) raftlease.Transport {
	return &transport{n: n, self: raftlease.RaftID(id)}
}

// Cut loses every message from member from to member to until Restore.
// Cuts may overlap; the link works again after as many Restores.
func (n *Network) Cut(from, to string) {
	n.mu.Lock()
	n.cut[[2]uint64{raftlease.RaftID(from), raftlease.RaftID(to)}]++
	n.mu.Unlock()
}

// Restore undoes one Cut(from, to).
func (n *Network) Restore(from, to string) {
	n.mu.Lock()
	k := [2]uint64{raftlease.RaftID(from), raftlease.RaftID(to)}
	if n.cut[k] > 0 {
		n.cut[k]--
	}
	n.mu.Unlock()
}

// SetLoss makes each message be lost with probability p.
func (n *Network) SetLoss(p float64) {
	n.mu.Lock()
	n.loss = p
	n.mu.Unlock()
}

// SetDelay delays each message by a random duration in [0, max]; messages
// overtake each other.
func (n *Network) SetDelay(max time.Duration) {
	n.mu.Lock()
	n.maxDelay = max
	n.mu.Unlock()
}

// Stats returns the number of messages sent and of those lost (to a cut,
// to the loss rate, or to a member that was not running).
func (n *Network) Stats() (sent, lost uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.sent, n.dropped
}

func (n *Network) send(from uint64, m *pb.Message) {
	n.mu.Lock()
	n.sent++
	to := m.GetTo()
	h := n.handlers[to]
	if h == nil || n.cut[[2]uint64{from, to}] > 0 || (n.loss > 0 && n.rng.Float64() < n.loss) {
		n.dropped++
		n.mu.Unlock()
		return
	}
	var d time.Duration
	if n.maxDelay > 0 {
		d = time.Duration(n.rng.Int63n(int64(n.maxDelay) + 1))
	}
	n.mu.Unlock()
	if d == 0 {
		h.Receive(m) // Receive never blocks: a full queue drops
		return
	}
	clock.AfterFunc(n.clk, d, func() {
		// Deliver to whoever runs as that member now; a link cut since
		// the send loses the message as it would in flight.
		n.mu.Lock()
		h := n.handlers[to]
		lost := h == nil || n.cut[[2]uint64{from, to}] > 0
		if lost {
			n.dropped++
		}
		n.mu.Unlock()
		if !lost {
			h.Receive(m)
		}
	})
}

// transport is one member's raftlease.Transport on a Network.
type transport struct {
	n    *Network
	self uint64

	mu     sync.Mutex
	h      raftlease.Handler
	closed bool
}

func (t *transport) Start(h raftlease.Handler) error {
	t.mu.Lock()
	t.h = h
	t.mu.Unlock()
	t.n.mu.Lock()
	t.n.handlers[t.self] = h
	t.n.mu.Unlock()
	return nil
}

func (t *transport) Send(m *pb.Message) {
	t.mu.Lock()
	closed := t.closed
	t.mu.Unlock()
	if !closed {
		t.n.send(t.self, m)
	}
}

// SetPeer and RemovePeer have nothing to do: members are found by Raft ID.
func (t *transport) SetPeer(uint64, string) {}
func (t *transport) RemovePeer(uint64)      {}

func (t *transport) Close() error {
	t.mu.Lock()
	t.closed = true
	h := t.h
	t.mu.Unlock()
	t.n.mu.Lock()
	if t.n.handlers[t.self] == h {
		delete(t.n.handlers, t.self)
	}
	t.n.mu.Unlock()
	return nil
}

var _ raftlease.Transport = (*transport)(nil)
