package raftlease

import (
	crand "crypto/rand"
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
)

// heartbeatTracker measures when a quorum last acknowledged this leader,
// and moves the held Term's self-fence deadline accordingly.
//
// A follower restarts its election timer when a heartbeat arrives, and
// with CheckQuorum it refuses to vote for anyone else for an election
// timeout after that. So if a quorum acknowledged a heartbeat that left
// the leader at time s, no rival can be elected before s + election
// timeout. The leader needs s, the send time, not the time the answer
// came back (which is later and would overstate the lease): it appends a
// stamp to the context of every heartbeat, followers echo the context in
// their response, and the leader looks up the send time of the stamp and
// strips it before Raft sees the response, so Raft's own read-index
// context is untouched.
//
// A stamp is "HK" | sequence number u64 | nonce u64, where the nonce is
// drawn for each batch of heartbeats from a random source seeded afresh
// from crypto/rand in every Raft term this member leads. A response
// counts only if it is for the current term and carries a nonce this
// leader sent with that sequence number: an acknowledgement cannot be
// guessed, and one from an earlier term cannot be replayed. A response
// that does not count is dropped before Raft sees it (Raft would count it
// for CheckQuorum). Only a response with a newer sequence number than the
// peer's last moves the deadline.
//
// Responses are taken in as they arrive from the transport, not when the
// run loop gets to them, so a slow disk write in the loop does not make
// the leader fence itself.
type heartbeatTracker struct {
	mu     sync.Mutex
	self   uint64
	window time.Duration        // the fence window: election timeout - drift margin
	term   uint64               // the Raft term stamps belong to; 0 while not leading
	rng    *rand.ChaCha8        // draws the nonces of term
	seq    uint64               // last stamp issued
	first  uint64               // stamps up to first belong to an earlier term
	sent   [stampRing]sentStamp // stamp s at s % stampRing
	batch  uint64               // stamp of the current Ready's heartbeats
	acked  map[uint64]uint64    // peer -> highest stamp acknowledged this term
	in     []uint64             // voters of the incoming configuration
	out    []uint64             // voters of the outgoing configuration, if joint
	held   *Term                // the Term whose deadline acks extend
}

type sentStamp struct {
	nonce uint64
	at    time.Time
}

const (
	stampRing = 256
	stampLen  = 2 + 8 + 8
)

// setVoters records the voters that count for the quorum.
func (h *heartbeatTracker) setVoters(in, out []uint64) {
	h.mu.Lock()
	h.in, h.out = in, out
	h.mu.Unlock()
}

// setHeld names the Term whose deadline acknowledgements extend.
func (h *heartbeatTracker) setHeld(t *Term) {
	h.mu.Lock()
	h.held = t
	h.mu.Unlock()
}

// lead starts stamping for Raft term term (0: not leading), forgetting
// every acknowledgement of another term.
func (h *heartbeatTracker) lead(term uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.leadLocked(term)
}

func (h *heartbeatTracker) leadLocked(term uint64) {
	if term == h.term {
		return
	}
	h.term, h.first = term, h.seq
	clear(h.acked)
	h.rng = nil
	if term != 0 {
		var seed [32]byte
		_, _ = crand.Read(seed[:]) // never fails (crypto/rand panics rather)
		h.rng = rand.NewChaCha8(seed)
	}
}

func (h *heartbeatTracker) beginBatch() {
	h.mu.Lock()
	h.batch = 0
	h.mu.Unlock()
}

// stamp appends the batch's stamp to the context of heartbeat m, which
// this member sends as leader of m's term.
func (h *heartbeatTracker) stamp(now time.Time, m *pb.Message) {
	h.mu.Lock()
	h.leadLocked(m.GetTerm())
	if h.batch == 0 {
		h.seq++
		h.sent[h.seq%stampRing] = sentStamp{nonce: h.rng.Uint64(), at: now}
		h.batch = h.seq
	}
	seq, nonce := h.batch, h.sent[h.batch%stampRing].nonce
	h.mu.Unlock()
	ctx := make([]byte, 0, len(m.GetContext())+stampLen)
	ctx = append(ctx, m.GetContext()...)
	ctx = append(ctx, 'H', 'K')
	ctx = binary.BigEndian.AppendUint64(ctx, seq)
	m.Context = binary.BigEndian.AppendUint64(ctx, nonce)
}

// receive checks the stamp of heartbeat response m, removes it, and moves
// the held Term's deadline if it is a newer acknowledgement. It reports
// whether m carried a stamp of this term's (Raft may see m), and runs on
// the transport's goroutine.
func (h *heartbeatTracker) receive(m *pb.Message, now time.Time) bool {
	ctx := m.GetContext()
	n := len(ctx)
	if n < stampLen || ctx[n-stampLen] != 'H' || ctx[n-stampLen+1] != 'K' {
		return false
	}
	seq, nonce := binary.BigEndian.Uint64(ctx[n-16:]), binary.BigEndian.Uint64(ctx[n-8:])
	if n == stampLen {
		m.Context = nil
	} else {
		m.Context = ctx[:n-stampLen]
	}
	h.mu.Lock()
	if h.term == 0 || m.GetTerm() != h.term || seq <= h.first || seq > h.seq || h.seq-seq >= stampRing ||
		h.sent[seq%stampRing].nonce != nonce {
		h.mu.Unlock()
		return false
	}
	if seq <= h.acked[m.GetFrom()] {
		h.mu.Unlock()
		return true // a second response to the same batch: Raft may need its context
	}
	if h.acked == nil {
		h.acked = map[uint64]uint64{}
	}
	h.acked[m.GetFrom()] = seq
	t, q := h.held, h.quorumAckLocked(now)
	h.mu.Unlock()
	if t != nil && !q.IsZero() {
		t.extend(q.Add(h.window))
	}
	return true
}

// quorumAck returns the latest time s such that a quorum of voters (this
// member counting as now) acknowledged a heartbeat sent at s or later,
// in both halves of a joint configuration; zero if there is none.
func (h *heartbeatTracker) quorumAck(now time.Time) time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.quorumAckLocked(now)
}

func (h *heartbeatTracker) quorumAckLocked(now time.Time) time.Time {
	t := h.quorumOf(h.in, now)
	if len(h.out) > 0 {
		if t2 := h.quorumOf(h.out, now); t2.Before(t) {
			t = t2
		}
	}
	return t
}

func (h *heartbeatTracker) quorumOf(voters []uint64, now time.Time) time.Time {
	if len(voters) == 0 {
		return time.Time{}
	}
	times := make([]time.Time, 0, len(voters))
	for _, id := range voters {
		switch seq := h.acked[id]; {
		case id == h.self:
			times = append(times, now)
		case seq > h.first && h.seq-seq < stampRing:
			times = append(times, h.sent[seq%stampRing].at)
		default:
			times = append(times, time.Time{})
		}
	}
	slices.SortFunc(times, func(a, b time.Time) int { return b.Compare(a) })
	return times[len(voters)/2]
}
