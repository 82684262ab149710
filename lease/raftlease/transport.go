package raftlease

import (
	pb "go.etcd.io/raft/v3/raftpb"
)

// Transport carries Raft messages between the members of a group. The
// group calls Start once, then Send for every outgoing message from its
// run loop, and SetPeer/RemovePeer as membership changes; Close when it
// stops. The TCP transport (NewTCPTransport) is the real one; a test or a
// simulation (ha/hatest) plugs in its own to delay, drop or partition.
//
// A Transport may lose, delay or reorder messages: Raft tolerates all
// three. It must not block the caller of Send on the network, or a slow
// peer would stall the leader.
type Transport interface {
	// Start begins delivering messages addressed to this member to h.
	Start(h Handler) error
	// Send queues m for delivery to the member m.To and returns at once;
	// it drops m if that member's queue is full or its address unknown.
	Send(m *pb.Message)
	// SetPeer sets the address of member id (a Raft ID, see RaftID).
	SetPeer(id uint64, addr string)
	// RemovePeer forgets member id and drops what is queued for it.
	RemovePeer(id uint64)
	// Close stops delivery and releases the transport's resources.
	Close() error
}

// Handler receives what a Transport delivers. Its methods do not block:
// a message that arrives while the group is busy is dropped, as if the
// network had lost it.
type Handler interface {
	// Receive hands over a message addressed to this member.
	Receive(m *pb.Message)
	// Unreachable reports that a send to member id failed, so that Raft
	// stops streaming to it until it answers again.
	Unreachable(id uint64)
	// SnapshotDone reports whether a snapshot message to member id was
	// written out (ok) or lost.
	SnapshotDone(id uint64, ok bool)
}
