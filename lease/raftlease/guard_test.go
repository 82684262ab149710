package raftlease

import (
	"encoding/binary"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
)

// TestCheck: what a member drops before Raft sees it, message by message,
// on a follower and on the leader of a running group.
func TestCheck(t *testing.T) {
	c := newCluster(t, 3, nil)
	ctx := testCtx(t, 20*time.Second)
	a := c.groups["a"]
	term, err := a.Campaign(ctx)
	if err != nil {
		t.Fatal(err)
	}
	writeKeys(t, a, term.Token(), "k", 3)
	b := c.groups["b"]
	if lead := c.raftLeader(ctx); lead != a {
		t.Fatalf("%s leads, not a", lead.ID())
	}
	tm := uint64(term.Token())
	A, B, C := RaftID("a"), RaftID("b"), RaftID("c")
	candidate := command{kind: opCandidate, origin: B, member: B, on: true}
	holder := command{kind: opHolder, origin: B, member: B, term: tm}
	put := command{kind: opPut, origin: B, token: 1, key: "k"}
	snap := func(cs *pb.ConfState, data []byte) *pb.Snapshot {
		return &pb.Snapshot{Data: data, Metadata: &pb.SnapshotMetadata{Index: new(uint64(1 << 20)), Term: &tm, ConfState: cs}}
	}
	good := newFSM().encode()
	for _, tc := range []struct {
		name string
		on   *Group
		m    *pb.Message
		want string
	}{
		{"to someone else", b, &pb.Message{Type: pb.MsgHeartbeat.Enum(), From: &A, To: &C, Term: &tm}, DropMisrouted},
		{"from itself", b, &pb.Message{Type: pb.MsgHeartbeat.Enum(), From: &B, To: &B, Term: &tm}, DropMisrouted},
		{"a local type", b, &pb.Message{Type: pb.MsgHup.Enum(), From: &A, To: &B, Term: &tm}, DropType},
		{"forget the leader", b, &pb.Message{Type: pb.MsgForgetLeader.Enum(), From: &A, To: &B, Term: &tm}, DropType},
		{"transfer request", a, &pb.Message{Type: pb.MsgTransferLeader.Enum(), From: &B, To: &A, Term: &tm}, DropType},
		{"an unknown type", b, &pb.Message{Type: pb.MessageType(99).Enum(), From: &A, To: &B, Term: &tm}, DropType},
		{"heartbeat of term 0", b, &pb.Message{Type: pb.MsgHeartbeat.Enum(), From: &A, To: &B}, DropTerm},
		{"proposal with a term", a, &pb.Message{Type: pb.MsgProp.Enum(), From: &B, To: &A, Term: new(tm + 5)}, DropTerm},
		{"a stranger", b, &pb.Message{Type: pb.MsgHeartbeat.Enum(), From: new(RaftID("x")), To: &B, Term: &tm}, DropNotMember},
		{"heartbeat from a non-leader", b, &pb.Message{Type: pb.MsgHeartbeat.Enum(), From: &C, To: &B, Term: &tm}, DropNotLeader},
		{"heartbeat to the leader", a, &pb.Message{Type: pb.MsgHeartbeat.Enum(), From: &B, To: &A, Term: &tm}, DropNotLeader},
		{"timeout-now from a non-leader", b, &pb.Message{Type: pb.MsgTimeoutNow.Enum(), From: &C, To: &B, Term: &tm}, DropNotLeader},
		{"commit beyond the log", b, &pb.Message{Type: pb.MsgHeartbeat.Enum(), From: &A, To: &B, Term: &tm, Commit: new(uint64(1 << 30))}, DropCommit},
		{"entries with a gap", b, &pb.Message{Type: pb.MsgApp.Enum(), From: &A, To: &B, Term: &tm, Index: new(uint64(3)), LogTerm: &tm,
			Entries: []*pb.Entry{{Index: new(uint64(5)), Term: &tm}}}, DropEntries},
		{"entry of a later term", b, &pb.Message{Type: pb.MsgApp.Enum(), From: &A, To: &B, Term: &tm, Index: new(uint64(3)), LogTerm: &tm,
			Entries: []*pb.Entry{{Index: new(uint64(4)), Term: new(tm + 1)}}}, DropEntries},
		{"entry before the log term", b, &pb.Message{Type: pb.MsgApp.Enum(), From: &A, To: &B, Term: &tm, Index: new(uint64(3)), LogTerm: &tm,
			Entries: []*pb.Entry{{Index: new(uint64(4)), Term: new(tm - 1)}}}, DropEntries},
		{"ack beyond the log", a, &pb.Message{Type: pb.MsgAppResp.Enum(), From: &B, To: &A, Term: &tm, Index: new(uint64(1 << 30))}, DropIndex},
		{"read index without context", a, &pb.Message{Type: pb.MsgReadIndex.Enum(), From: &B, To: &A}, DropEntries},
		{"read index answer without context", b, &pb.Message{Type: pb.MsgReadIndexResp.Enum(), From: &A, To: &B, Term: &tm}, DropEntries},
		{"forwarded write", a, &pb.Message{Type: pb.MsgProp.Enum(), From: &B, To: &A, Entries: []*pb.Entry{{Data: put.encode()}}}, DropProposal},
		{"forwarded holder record", a, &pb.Message{Type: pb.MsgProp.Enum(), From: &B, To: &A, Entries: []*pb.Entry{{Data: holder.encode()}}}, DropProposal},
		{"someone else's candidacy", a, &pb.Message{Type: pb.MsgProp.Enum(), From: &C, To: &A, Entries: []*pb.Entry{{Data: candidate.encode()}}}, DropProposal},
		{"garbage proposal", a, &pb.Message{Type: pb.MsgProp.Enum(), From: &B, To: &A, Entries: []*pb.Entry{{Data: []byte("junk")}}}, DropProposal},
		{"snapshot that cannot be decoded", b, &pb.Message{Type: pb.MsgSnap.Enum(), From: &A, To: &B, Term: &tm,
			Snapshot: snap(&pb.ConfState{Voters: []uint64{A, B, C}}, []byte("junk"))}, DropSnapshot},
		{"snapshot with a broken configuration", b, &pb.Message{Type: pb.MsgSnap.Enum(), From: &A, To: &B, Term: &tm,
			Snapshot: snap(&pb.ConfState{Voters: []uint64{A, B}, Learners: []uint64{B}}, good)}, DropSnapshot},
		{"snapshot of index 0", b, &pb.Message{Type: pb.MsgSnap.Enum(), From: &A, To: &B, Term: &tm,
			Snapshot: &pb.Snapshot{Metadata: &pb.SnapshotMetadata{Term: &tm}}}, DropSnapshot},

		{"the leader's heartbeat", b, &pb.Message{Type: pb.MsgHeartbeat.Enum(), From: &A, To: &B, Term: &tm, Commit: new(uint64(1))}, ""},
		{"a higher term's heartbeat", b, &pb.Message{Type: pb.MsgHeartbeat.Enum(), From: &C, To: &B, Term: new(tm + 1)}, ""},
		{"own candidacy", a, &pb.Message{Type: pb.MsgProp.Enum(), From: &B, To: &A, Entries: []*pb.Entry{{Data: candidate.encode()}}}, ""},
		{"a vote request", b, &pb.Message{Type: pb.MsgPreVote.Enum(), From: &C, To: &B, Term: new(tm + 1)}, ""},
		{"a usable snapshot", b, &pb.Message{Type: pb.MsgSnap.Enum(), From: &A, To: &B, Term: &tm,
			Snapshot: snap(&pb.ConfState{Voters: []uint64{A, B, C}}, good)}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var reason, detail string
			if err := tc.on.do(ctx, func() { reason, detail = tc.on.check(tc.m) }); err != nil {
				t.Fatal(err)
			}
			if reason != tc.want {
				t.Fatalf("check = %q (%s), want %q", reason, detail, tc.want)
			}
		})
	}
}

// TestHeartbeatStamps: only a response carrying this term's stamp, with
// the nonce sent under its sequence number, counts; one of an earlier
// term does not, and only a newer one moves the deadline.
func TestHeartbeatStamps(t *testing.T) {
	const self, peer, other = 1, 2, 3
	h := &heartbeatTracker{self: self, window: time.Second}
	h.setVoters([]uint64{self, peer, other}, nil)
	t0 := time.Unix(1000, 0)
	send := func(term uint64, at time.Time) []byte {
		m := &pb.Message{Type: pb.MsgHeartbeat.Enum(), Term: &term, Context: []byte("read")}
		h.beginBatch()
		h.stamp(at, m)
		return m.GetContext()
	}
	resp := func(term uint64, from uint64, ctx []byte) *pb.Message {
		return &pb.Message{Type: pb.MsgHeartbeatResp.Enum(), Term: &term, From: &from, Context: append([]byte(nil), ctx...)}
	}
	ctx5 := send(5, t0)
	if len(ctx5) != len("read")+stampLen {
		t.Fatalf("stamped context %x", ctx5)
	}
	forged := append([]byte("read"), ctx5[4:]...)
	binary.BigEndian.PutUint64(forged[len(forged)-8:], 12345) // the right sequence, a guessed nonce
	for _, tc := range []struct {
		name string
		m    *pb.Message
		ok   bool
	}{
		{"no stamp", resp(5, peer, []byte("read")), false},
		{"the old stamp", resp(5, peer, binary.BigEndian.AppendUint64([]byte("HK"), 1)), false},
		{"a guessed nonce", resp(5, peer, forged), false},
		{"another term", resp(6, peer, ctx5), false},
		{"the real one", resp(5, peer, ctx5), true},
		{"the same again", resp(5, peer, ctx5), true},
	} {
		m := tc.m
		if ok := h.receive(m, t0.Add(time.Millisecond)); ok != tc.ok {
			t.Fatalf("%s: receive = %v, want %v", tc.name, ok, tc.ok)
		}
		if tc.ok && string(m.GetContext()) != "read" {
			t.Fatalf("%s: stamp not stripped: %q", tc.name, m.GetContext())
		}
	}
	if q := h.quorumAck(t0.Add(time.Millisecond)); !q.Equal(t0) {
		t.Fatalf("quorum acknowledgement at %v, want the send time %v", q, t0)
	}
	// A new term of leadership: the earlier term's stamps are worthless,
	// even replayed with the new term number.
	ctx7 := send(7, t0.Add(time.Second))
	if h.receive(resp(7, peer, ctx5), t0.Add(time.Second)) {
		t.Fatal("a stamp of term 5 counted in term 7")
	}
	if q := h.quorumAck(t0.Add(time.Second)); !q.IsZero() {
		t.Fatalf("acknowledgements of term 5 still count in term 7: %v", q)
	}
	if !h.receive(resp(7, other, ctx7), t0.Add(time.Second)) {
		t.Fatal("term 7's own stamp refused")
	}
	h.lead(0)
	if h.receive(resp(7, peer, ctx7), t0.Add(time.Second)) {
		t.Fatal("a response counted after stepping down")
	}
}
