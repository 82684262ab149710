package raftlease

import (
	"errors"
	"fmt"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/lease"
)

// applyEntry applies one committed entry to the state machine and hands
// the result to the member's waiting proposer, if any.
func (g *Group) applyEntry(e *pb.Entry) error {
	idx := e.GetIndex()
	if idx <= g.applied {
		return nil
	}
	switch e.GetType() {
	case pb.EntryNormal:
		if len(e.GetData()) == 0 {
			break // a new leader's empty entry
		}
		c, err := decodeCommand(e.GetData())
		if err != nil {
			return fmt.Errorf("apply entry %d of term %d: %w", idx, e.GetTerm(), err)
		}
		before := g.sm.holder
		r := g.sm.apply(idx, c)
		if h := g.sm.holder; h != before && h.member != g.self {
			// Every member applies every holder record in log order,
			// so observers see every term even when the next one
			// follows too fast for the leader view to show it.
			g.publishHolder(lease.Leader{ID: g.memberName(h.member), Token: fence.Token(h.term), Addr: h.addr})
		}
		if c.origin == g.self && c.nonce == g.nonce {
			if p, ok := g.pending[c.seq]; ok {
				p.ch <- r
				delete(g.pending, c.seq)
			}
		}
	case pb.EntryConfChange:
		var cc pb.ConfChange
		if err := unmarshalConfChange(e.GetData(), &cc); err != nil {
			return fmt.Errorf("apply configuration change %d: %w", idx, err)
		}
		g.applyConfChange(idx, &cc)
	default:
		return fmt.Errorf("apply entry %d: %w: entry type %v", idx, ErrCorrupt, e.GetType())
	}
	g.applied = idx
	g.logBytes += len(e.GetData())
	return nil
}

// maybeSnapshot snapshots the state machine and compacts the log once
// SnapshotEntries entries were applied since the last snapshot, or once
// the entries applied since hold a quarter of the store's bytes (and at
// least minSnapshotLogBytes): the log held in memory between two
// snapshots then stays below a quarter of the store plus
// CompactionMargin entries, which keeps the member's memory near twice
// the bytes it stores and its peak near its steady state, at the cost of
// writing the store once for every quarter of it written to the log.
//
// A configuration change forces a snapshot once a first one exists: a
// member added after the log was compacted is sent the latest snapshot,
// and Raft ignores a snapshot whose configuration does not include the
// receiver.
func (g *Group) maybeSnapshot() error {
	force := g.confChanged && g.snapIndex > 0 && g.applied > g.snapIndex
	g.confChanged = false
	since := g.applied - g.snapIndex
	bySize := g.logBytes >= minSnapshotLogBytes && 4*g.logBytes >= g.sm.bytes
	if !force && !bySize && since < g.cfg.SnapshotEntries {
		return nil
	}
	size, write := g.sm.snapshot()
	if err := g.db.CreateSnapshotFrom(g.applied, g.confState, size, write); err != nil {
		return fmt.Errorf("snapshot at index %d: %w", g.applied, err)
	}
	g.snapIndex, g.logBytes = g.applied, 0
	if g.applied > g.cfg.CompactionMargin {
		if err := g.db.Compact(g.applied - g.cfg.CompactionMargin); err != nil && !errors.Is(err, raft.ErrCompacted) {
			return fmt.Errorf("compact log to index %d: %w", g.applied-g.cfg.CompactionMargin, err)
		}
	}
	g.log.Debug("raftlease: snapshot", "index", g.applied, "bytes", size)
	return nil
}

// minSnapshotLogBytes is the least log, in bytes, between two snapshots
// taken for the log's size (see maybeSnapshot): a small store is not
// written out for every few writes.
const minSnapshotLogBytes = 64 << 10

// restore replaces the state machine with a snapshot received from the
// leader.
func (g *Group) restore(snap *pb.Snapshot) error {
	md := snap.GetMetadata()
	var sm *fsm
	if r := g.received; r != nil && r.index == md.GetIndex() && r.term == md.GetTerm() {
		sm = r.sm // decoded when the message was checked
	} else {
		var err error
		if sm, err = decodeFSM(snap.GetData()); err != nil {
			return fmt.Errorf("snapshot at index %d from the leader: %w", md.GetIndex(), err)
		}
	}
	g.received = nil
	g.sm = sm
	g.applied = snap.GetMetadata().GetIndex()
	g.snapIndex, g.logBytes = g.applied, 0
	g.setConfState(snap.GetMetadata().GetConfState())
	for id, addr := range g.peerAddrs() {
		g.tr.SetPeer(id, addr)
	}
	return nil
}

// setConfState records the configuration and its voters.
func (g *Group) setConfState(cs *pb.ConfState) {
	g.confState = cs
	g.hb.setVoters(sortedVoters(cs))
}
