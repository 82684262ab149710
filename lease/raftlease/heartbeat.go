package raftlease

import (
	"encoding/binary"
	"slices"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
)

// heartbeatTracker measures when a quorum last acknowledged this leader.
//
// A follower restarts its election timer when a heartbeat arrives, and
// with CheckQuorum it refuses to vote for anyone else for an election
// timeout after that. So if a quorum acknowledged a heartbeat that left
// the leader at time s, no rival can be elected before s + election
// timeout. The leader needs s, the send time, not the time the answer
// came back (which is later and would overstate the lease): it appends a
// stamp, "HK" and a sequence number, to the context of every heartbeat;
// followers echo the context in their response; the leader looks up the
// send time of that sequence number and strips the stamp before Raft sees
// the response, so Raft's own read-index context is untouched.
type heartbeatTracker struct {
	seq   uint64               // last stamp issued
	first uint64               // stamps up to first belong to an earlier term
	sent  [stampRing]time.Time // send time of stamp s at s % stampRing
	batch uint64               // stamp of the current Ready's heartbeats
	acked map[uint64]uint64    // peer -> highest stamp acknowledged this term
}

const (
	stampRing = 256
	stampLen  = 10
)

// reset forgets all acknowledgements: they were for another term.
func (h *heartbeatTracker) reset() {
	h.first = h.seq
	clear(h.acked)
}

func (h *heartbeatTracker) beginBatch() { h.batch = 0 }

// stamp appends the batch's stamp to the context of heartbeat m.
func (h *heartbeatTracker) stamp(g *Group, m *pb.Message) {
	if h.batch == 0 {
		h.seq++
		h.sent[h.seq%stampRing] = g.clk.Now()
		h.batch = h.seq
	}
	ctx := make([]byte, 0, len(m.GetContext())+stampLen)
	ctx = append(ctx, m.GetContext()...)
	ctx = append(ctx, 'H', 'K')
	m.Context = binary.BigEndian.AppendUint64(ctx, h.batch)
}

// receive records the stamp of heartbeat response m and removes it.
func (h *heartbeatTracker) receive(g *Group, m *pb.Message) {
	ctx := m.GetContext()
	n := len(ctx)
	if n < stampLen || ctx[n-stampLen] != 'H' || ctx[n-stampLen+1] != 'K' {
		return
	}
	seq := binary.BigEndian.Uint64(ctx[n-8:])
	if n == stampLen {
		m.Context = nil
	} else {
		m.Context = ctx[:n-stampLen]
	}
	if seq <= h.first || seq > h.seq || h.seq-seq >= stampRing {
		return
	}
	if h.acked == nil {
		h.acked = map[uint64]uint64{}
	}
	if seq > h.acked[m.GetFrom()] {
		h.acked[m.GetFrom()] = seq
		g.el.onAck(g)
	}
}

// quorumAck returns the latest time s such that a quorum of voters (this
// member counting as now) acknowledged a heartbeat sent at s or later,
// in both halves of a joint configuration; zero if there is none.
func (h *heartbeatTracker) quorumAck(g *Group, now time.Time) time.Time {
	in, out := sortedVoters(g.confState)
	t := h.quorumOf(g, in, now)
	if len(out) > 0 {
		if t2 := h.quorumOf(g, out, now); t2.Before(t) {
			t = t2
		}
	}
	return t
}

func (h *heartbeatTracker) quorumOf(g *Group, voters []uint64, now time.Time) time.Time {
	if len(voters) == 0 {
		return time.Time{}
	}
	times := make([]time.Time, 0, len(voters))
	for _, id := range voters {
		switch seq := h.acked[id]; {
		case id == g.self:
			times = append(times, now)
		case seq > h.first && h.seq-seq < stampRing:
			times = append(times, h.sent[seq%stampRing])
		default:
			times = append(times, time.Time{})
		}
	}
	slices.SortFunc(times, func(a, b time.Time) int { return b.Compare(a) })
	return times[len(voters)/2]
}
