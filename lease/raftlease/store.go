package raftlease

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"go.etcd.io/raft/v3"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/storage"
)

// Store returns the group's replicated fenced key-value store, a
// storage.Store:
//
//   - Writes go through the Raft log and return once the entry is
//     committed (on a quorum's disks) and applied here. They must be made
//     on the Raft leader; elsewhere they fail at once with ErrNotLeader
//     naming the leader. The fence is applied with the log, identically
//     on every member: a write is applied only if its token is at least
//     the highest token applied before it, otherwise it fails with
//     fence.ErrStale. Versions are the Raft index of the write's entry.
//   - A write whose context ends, or whose leader steps down, before it
//     is applied returns an error but may still be applied later; a write
//     that returned nil survives any failover.
//   - Reads are linearizable on every member: Get asks the leader for its
//     commit index (Raft ReadIndex, confirmed by a quorum), waits until
//     this member has applied that far, and reads locally. A follower's
//     read therefore costs a round trip to the leader; while no leader is
//     known it waits for one, until ctx ends.
func (g *Group) Store() storage.Store { return (*groupStore)(g) }

type groupStore Group

var _ storage.Store = (*groupStore)(nil)

func (s *groupStore) Get(ctx context.Context, key string) (storage.Item, error) {
	g := (*Group)(s)
	if err := storage.ValidateKey(key); err != nil {
		return storage.Item{}, err
	}
	if err := ctx.Err(); err != nil {
		return storage.Item{}, fmt.Errorf("raftlease: get %q: %w", key, err)
	}
	r := &readReq{ch: make(chan readResult, 1), key: key}
	var id uint64
	if err := g.do(ctx, func() {
		id = g.nextSeq()
		r.ctx = binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, g.nonce), id)
		g.reads[id] = r
		if g.lead != raft.None {
			r.issued = g.clk.Now()
			g.rn.ReadIndex(r.ctx)
		}
	}); err != nil {
		return storage.Item{}, fmt.Errorf("raftlease: get %q: %w", key, err)
	}
	select {
	case res := <-r.ch:
		return res.item, res.err
	case <-ctx.Done():
		g.post(func() { delete(g.reads, id) })
		return storage.Item{}, fmt.Errorf("raftlease: get %q: %w", key, ctx.Err())
	}
}

func (s *groupStore) Put(ctx context.Context, t fence.Token, key string, value []byte) (storage.Version, error) {
	r := s.write(ctx, command{kind: opPut, token: t, key: key, value: bytes.Clone(value)})
	return r.version, r.err
}

func (s *groupStore) CompareAndSwap(ctx context.Context, t fence.Token, key string, old storage.Version, value []byte) (storage.Version, error) {
	r := s.write(ctx, command{kind: opCAS, token: t, key: key, old: old, value: bytes.Clone(value)})
	return r.version, r.err
}

func (s *groupStore) Delete(ctx context.Context, t fence.Token, key string) error {
	return s.write(ctx, command{kind: opDelete, token: t, key: key}).err
}

func (s *groupStore) write(ctx context.Context, c command) result {
	g := (*Group)(s)
	if err := storage.ValidateKey(c.key); err != nil {
		return result{err: err}
	}
	if err := ctx.Err(); err != nil {
		return result{err: fmt.Errorf("raftlease: %s %q: %w", c.kind, c.key, err)}
	}
	if c.token == 0 {
		return result{err: fmt.Errorf("raftlease: %s %q: %w", c.kind, c.key, fence.ErrNoToken)}
	}
	if len(c.value) > g.cfg.MaxValueBytes {
		return result{err: fmt.Errorf("raftlease: %s %q: value of %d bytes exceeds MaxValueBytes %d", c.kind, c.key, len(c.value), g.cfg.MaxValueBytes)}
	}
	ch := make(chan result, 1)
	if err := g.do(ctx, func() {
		if g.role != raft.StateLeader {
			ch <- result{err: g.notLeaderErr(fmt.Sprintf("%s %q", c.kind, c.key))}
			return
		}
		c.origin, c.nonce, c.seq = g.self, g.nonce, g.nextSeq()
		if err := g.rn.Propose(c.encode()); err != nil {
			ch <- result{err: fmt.Errorf("%w: member %q: %s %q: proposal dropped (%v)", ErrNotLeader, g.cfg.ID, c.kind, c.key, err)}
			return
		}
		g.pending[c.seq] = &proposal{ch: ch, term: g.raftTerm}
	}); err != nil {
		return result{err: fmt.Errorf("raftlease: %s %q: %w", c.kind, c.key, err)}
	}
	select {
	case r := <-ch:
		return r
	case <-ctx.Done():
		seq := c.seq
		g.post(func() { delete(g.pending, seq) })
		return result{err: fmt.Errorf("raftlease: %s %q: outcome unknown: %w", c.kind, c.key, ctx.Err())}
	}
}

// readReq is a Get waiting for its read index and then for the state
// machine to reach it.
type readReq struct {
	ch     chan readResult
	key    string
	ctx    []byte
	index  uint64 // 0 until Raft answered the read-index request
	issued time.Time
}

type readResult struct {
	item storage.Item
	err  error
}

func (g *Group) readIndexReady(rs raft.ReadState) {
	if len(rs.RequestCtx) != 16 || binary.BigEndian.Uint64(rs.RequestCtx) != g.nonce {
		return
	}
	if r, ok := g.reads[binary.BigEndian.Uint64(rs.RequestCtx[8:])]; ok && r.index == 0 {
		r.index = rs.Index
	}
}

// serveReads answers the reads whose index has been applied.
func (g *Group) serveReads() {
	for id, r := range g.reads {
		if r.index != 0 && r.index <= g.applied {
			it, err := g.sm.get(r.key)
			r.ch <- readResult{item: it, err: err}
			delete(g.reads, id)
		}
	}
}

// retryReads asks for the read indexes of reads made while no leader was
// known, and again for those not answered within an election timeout:
// the request or the answer may have been lost.
func (g *Group) retryReads() {
	if g.lead == raft.None {
		return
	}
	now := g.clk.Now()
	for _, r := range g.reads {
		if r.index == 0 && (r.issued.IsZero() || now.Sub(r.issued) >= g.cfg.electionTimeout()) {
			r.issued = now
			g.rn.ReadIndex(r.ctx)
		}
	}
}
