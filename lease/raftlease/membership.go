package raftlease

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"sort"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Member is one voting member of the group as the replicated log knows it.
type Member struct {
	ID     string // the member's name (Config.ID)
	Addr   string // the address its transport listens on
	RaftID uint64 // RaftID(ID)
}

// Members returns the voting members in the configuration this member has
// applied, sorted by ID.
func (g *Group) Members(ctx context.Context) ([]Member, error) {
	var out []Member
	if err := g.do(ctx, func() {
		in, _ := sortedVoters(g.confState)
		for _, id := range in {
			out = append(out, Member{ID: g.memberName(id), Addr: g.memberAddr(id), RaftID: id})
		}
	}); err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// AddMember adds the member named id, listening on addr, as a voter. It
// must be called on the leader (else ErrNotLeader) and returns once the
// configuration change is applied here. Start the new member with
// Config.Join set and Peers naming the existing members; until it has
// caught up the group needs a quorum of the enlarged membership, so add
// one member at a time to a healthy group. The ID must not map to the
// Raft ID of another member (see RaftID).
func (g *Group) AddMember(ctx context.Context, id, addr string) error {
	if id == "" || len(id) > maxMemberIDLen || len(addr) > maxAddrLen {
		return configError("AddMember", "member ID must be 1 to %d bytes and the address at most %d", maxMemberIDLen, maxAddrLen)
	}
	if g.cfg.Transport == nil && g.cfg.TLS == nil && !g.cfg.Insecure {
		return configError("AddMember", "member %q runs a group of one over plain TCP; restart it with TLS (or, on a trusted, isolated network, Insecure) before adding members", g.cfg.ID)
	}
	rid := RaftID(id)
	return g.changeConf(ctx, fmt.Sprintf("add member %q", id), func() (*pb.ConfChange, error) {
		if m, ok := g.sm.members[rid]; ok && m.ID != id {
			return nil, fmt.Errorf("raftlease: add member %q: Raft ID %x is taken by member %q", id, rid, m.ID)
		}
		in, _ := sortedVoters(g.confState)
		for _, v := range in {
			if v == rid {
				return nil, fmt.Errorf("raftlease: add member %q: already a voting member", id)
			}
		}
		return &pb.ConfChange{Type: pb.ConfChangeAddNode.Enum(), NodeId: &rid, Context: memberInfo{ID: id, Addr: addr}.encode()}, nil
	})
}

// RemoveMember removes the member named id from the group. It must be
// called on the leader and returns once the change is applied here. A
// leader that removes itself steps down; the removed member should then
// be closed.
func (g *Group) RemoveMember(ctx context.Context, id string) error {
	rid := RaftID(id)
	return g.changeConf(ctx, fmt.Sprintf("remove member %q", id), func() (*pb.ConfChange, error) {
		in, _ := sortedVoters(g.confState)
		for _, v := range in {
			if v == rid {
				if len(in) == 1 {
					return nil, fmt.Errorf("raftlease: remove member %q: it is the last voter", id)
				}
				return &pb.ConfChange{Type: pb.ConfChangeRemoveNode.Enum(), NodeId: &rid}, nil
			}
		}
		return nil, fmt.Errorf("raftlease: remove member %q: not a voting member", id)
	})
}

// changeConf proposes the configuration change that build returns and
// waits for it to be applied here.
func (g *Group) changeConf(ctx context.Context, what string, build func() (*pb.ConfChange, error)) error {
	ch := make(chan error, 1)
	var ccID uint64
	if err := g.do(ctx, func() {
		if g.role != raft.StateLeader {
			ch <- g.notLeaderErr(what)
			return
		}
		cc, err := build()
		if err != nil {
			ch <- err
			return
		}
		var b [8]byte
		_, _ = rand.Read(b[:])
		ccID = binary.BigEndian.Uint64(b[:])
		cc.Id = &ccID
		if err := g.rn.ProposeConfChange(cc); err != nil {
			ch <- fmt.Errorf("%w: member %q: %s: proposal dropped (%v)", ErrNotLeader, g.cfg.ID, what, err)
			return
		}
		g.confWaiters[ccID] = ch
	}); err != nil {
		return err
	}
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		g.post(func() { delete(g.confWaiters, ccID) })
		return fmt.Errorf("raftlease: %s: outcome unknown: %w", what, ctx.Err())
	}
}

// applyConfChange applies a committed configuration change: to Raft, to
// the replicated member list and to the transport.
func (g *Group) applyConfChange(index uint64, cc *pb.ConfChange) {
	g.setConfState(g.rn.ApplyConfChange(cc))
	g.confChanged = true
	id := cc.GetNodeId()
	switch cc.GetType() {
	case pb.ConfChangeAddNode, pb.ConfChangeAddLearnerNode:
		if len(cc.GetContext()) > 0 {
			m, err := decodeMemberInfo(cc.GetContext())
			if err != nil {
				// Deterministic on every member: the member keeps no
				// name, and the error is logged where it is seen.
				g.log.Error("raftlease: configuration change with a bad member record", "index", index, "err", err)
			} else {
				g.sm.members[id] = m
			}
		}
		if id != g.self {
			g.tr.SetPeer(id, g.memberAddr(id))
		}
	case pb.ConfChangeRemoveNode:
		delete(g.sm.members, id)
		delete(g.sm.candidates, id)
		delete(g.sm.logged, id)
		if id != g.self {
			g.tr.RemovePeer(id)
		} else {
			g.log.Warn("raftlease: this member was removed from the group", "index", index)
		}
	}
	if ch, ok := g.confWaiters[cc.GetId()]; ok {
		ch <- nil
		delete(g.confWaiters, cc.GetId())
	}
}

func unmarshalConfChange(data []byte, cc *pb.ConfChange) error {
	if err := proto.Unmarshal(data, cc); err != nil {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return nil
}
