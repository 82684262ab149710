package raftlease

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/confchange"
	pb "go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
)

// Reasons a message from a peer is dropped before Raft sees it; the keys
// of Stats.Dropped.
const (
	DropMisrouted   = "misrouted"    // not addressed to this member, or from itself or nobody
	DropNotMember   = "not-a-member" // the sender is not in the configuration this member applied
	DropType        = "type"         // a type peers never send (local, transfer requests, unknown)
	DropTerm        = "term"         // a term that cannot go with the type (0 where one is needed, or the reverse)
	DropNotLeader   = "not-leader"   // a leader's message from a member that does not lead this term
	DropCommit      = "commit"       // a heartbeat's commit index beyond this member's log
	DropEntries     = "entries"      // entries that do not follow the message's index and term
	DropIndex       = "index"        // an acknowledged index beyond this leader's log
	DropSnapshot    = "snapshot"     // a snapshot whose metadata, configuration or data cannot be used
	DropProposal    = "proposal"     // a forwarded proposal that is not the sender's own candidacy flag
	DropAck         = "ack"          // a heartbeat response without this term's stamp (forged, replayed or stale)
	DropOverwhelmed = "overwhelmed"  // the run loop's queue was full
)

const (
	dropLogInterval  = time.Second // at most one log line per reason per interval
	maxEntriesPerMsg = 1 << 16     // more entries than Raft ever sends in one message
)

// guard counts and logs the messages dropped before Step. Counting is
// safe from any goroutine (the transport's receive path drops too).
type guard struct {
	mu      sync.Mutex
	counts  map[string]uint64
	logged  map[string]time.Time
	lastErr map[string]string
}

func (d *guard) drop(g *Group, reason string, m *pb.Message, detail string) {
	now := time.Now()
	d.mu.Lock()
	if d.counts == nil {
		d.counts, d.logged, d.lastErr = map[string]uint64{}, map[string]time.Time{}, map[string]string{}
	}
	d.counts[reason]++
	d.lastErr[reason] = detail
	quiet := now.Sub(d.logged[reason]) < dropLogInterval
	if !quiet {
		d.logged[reason] = now
	}
	n := d.counts[reason]
	d.mu.Unlock()
	if !quiet {
		g.log.Warn("raftlease: dropped a message that cannot be legitimate", "reason", reason, "type", m.GetType().String(),
			"from", fmt.Sprintf("%x", m.GetFrom()), "term", m.GetTerm(), "detail", detail, "dropped_for_this_reason", n)
	}
}

func (d *guard) snapshot() map[string]uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]uint64, len(d.counts))
	for k, v := range d.counts {
		out[k] = v
	}
	return out
}

// peerTypes are the message types members send each other.
var peerTypes = map[pb.MessageType]bool{
	pb.MsgApp: true, pb.MsgAppResp: true, pb.MsgVote: true, pb.MsgVoteResp: true, pb.MsgSnap: true,
	pb.MsgHeartbeat: true, pb.MsgHeartbeatResp: true, pb.MsgTimeoutNow: true, pb.MsgReadIndex: true,
	pb.MsgReadIndexResp: true, pb.MsgPreVote: true, pb.MsgPreVoteResp: true, pb.MsgProp: true,
}

// leaderTypes are sent only by the leader of the message's term.
var leaderTypes = map[pb.MessageType]bool{
	pb.MsgApp: true, pb.MsgHeartbeat: true, pb.MsgSnap: true, pb.MsgTimeoutNow: true, pb.MsgReadIndexResp: true,
}

// check returns why m cannot be legitimate ("" if it can), with a detail
// for the log. It runs on the run loop before Step: go.etcd.io/raft trusts
// its peers and panics (killing the process) or breaks its own invariants
// on some messages no member would send, such as a heartbeat whose commit
// index is beyond the receiver's log.
func (g *Group) check(m *pb.Message) (reason, detail string) {
	t := m.GetType()
	switch {
	case m.GetTo() != g.self || m.GetFrom() == raft.None || m.GetFrom() == g.self:
		return DropMisrouted, fmt.Sprintf("from %x to %x", m.GetFrom(), m.GetTo())
	case !peerTypes[t]:
		return DropType, "peers never send this type"
	case (t == pb.MsgProp || t == pb.MsgReadIndex) != (m.GetTerm() == 0):
		// Raft reads term 0 as a local message, and a forwarded
		// proposal with a term would make a leader adopt it.
		return DropTerm, "term does not go with the type"
	case !g.isMember(m.GetFrom()):
		return DropNotMember, "not in the applied configuration"
	}
	if leaderTypes[t] && m.GetTerm() == g.raftTerm && (g.role == raft.StateLeader || (g.lead != raft.None && g.lead != m.GetFrom())) {
		return DropNotLeader, fmt.Sprintf("the leader of term %d is %x", g.raftTerm, g.lead)
	}
	switch t {
	case pb.MsgHeartbeat:
		if last := g.lastIndex(); m.GetCommit() > last {
			return DropCommit, fmt.Sprintf("commit %d is beyond the last index %d", m.GetCommit(), last)
		}
	case pb.MsgApp:
		return checkEntries(m)
	case pb.MsgAppResp:
		if last := g.lastIndex(); m.GetIndex() > last || m.GetRejectHint() > last {
			return DropIndex, fmt.Sprintf("index %d (hint %d) is beyond the last index %d", m.GetIndex(), m.GetRejectHint(), last)
		}
	case pb.MsgReadIndex, pb.MsgReadIndexResp:
		if len(m.GetEntries()) != 1 {
			return DropEntries, fmt.Sprintf("%d entries, want the request context alone", len(m.GetEntries()))
		}
	case pb.MsgTimeoutNow:
		if m.GetFrom() != g.lead || m.GetTerm() != g.raftTerm {
			return DropNotLeader, fmt.Sprintf("only the leader of term %d (%x) hands leadership over", g.raftTerm, g.lead)
		}
	case pb.MsgSnap:
		return g.checkSnapshot(m)
	case pb.MsgProp:
		return checkProposal(m)
	}
	return "", ""
}

// isMember reports whether id is in the configuration this member applied
// (either half of a joint one). A member that has applied none yet (it
// joins) hears from whoever leads.
func (g *Group) isMember(id uint64) bool {
	cs := g.confState
	if len(cs.GetVoters()) == 0 {
		return true
	}
	return slices.Contains(cs.GetVoters(), id) || slices.Contains(cs.GetVotersOutgoing(), id) ||
		slices.Contains(cs.GetLearners(), id) || slices.Contains(cs.GetLearnersNext(), id)
}

// lastIndex is the last index of the log as Raft sees it. The run loop
// persists every Ready before it checks a message that needs it (see
// step), so the durable log is Raft's log.
func (g *Group) lastIndex() uint64 {
	last, err := g.db.LastIndex()
	if err != nil {
		return 0
	}
	return last
}

// checkEntries checks that a MsgApp's entries follow its index and term:
// consecutive indexes from Index+1, terms from LogTerm up to the message's
// term, never decreasing, of the kinds this group writes. Raft panics on
// an entry that would overwrite one it committed.
func checkEntries(m *pb.Message) (string, string) {
	ents := m.GetEntries()
	if len(ents) > maxEntriesPerMsg {
		return DropEntries, fmt.Sprintf("%d entries", len(ents))
	}
	prevTerm := m.GetLogTerm()
	if prevTerm > m.GetTerm() {
		return DropEntries, fmt.Sprintf("log term %d is above the message's term %d", prevTerm, m.GetTerm())
	}
	for k, e := range ents {
		switch {
		case e.GetIndex() != m.GetIndex()+1+uint64(k):
			return DropEntries, fmt.Sprintf("entry %d at position %d after index %d", e.GetIndex(), k, m.GetIndex())
		case e.GetTerm() < prevTerm || e.GetTerm() > m.GetTerm():
			return DropEntries, fmt.Sprintf("entry %d has term %d, outside [%d, %d]", e.GetIndex(), e.GetTerm(), prevTerm, m.GetTerm())
		case e.GetType() != pb.EntryNormal && e.GetType() != pb.EntryConfChange:
			return DropEntries, fmt.Sprintf("entry %d has type %v", e.GetIndex(), e.GetType())
		}
		prevTerm = e.GetTerm()
	}
	return "", ""
}

// checkProposal: the one proposal a follower forwards to the leader is
// its own candidacy flag (see elect); writes are refused on followers and
// configuration changes are made on the leader.
func checkProposal(m *pb.Message) (string, string) {
	ents := m.GetEntries()
	if len(ents) != 1 || ents[0].GetType() != pb.EntryNormal {
		return DropProposal, fmt.Sprintf("%d entries", len(ents))
	}
	c, err := decodeCommand(ents[0].GetData())
	switch {
	case err != nil:
		return DropProposal, err.Error()
	case c.kind != opCandidate || c.origin != m.GetFrom() || c.member != m.GetFrom():
		return DropProposal, fmt.Sprintf("%s by %x for %x", c.kind, c.origin, c.member)
	}
	return "", ""
}

// checkSnapshot: a snapshot must name an index and term, carry a
// configuration Raft can restore and that holds this member, and data the
// store can decode; the decoded store is kept for restore. Raft panics on
// a configuration it cannot restore, and a store that cannot be decoded
// would stop the member.
func (g *Group) checkSnapshot(m *pb.Message) (string, string) {
	s := m.GetSnapshot()
	md := s.GetMetadata()
	if md.GetIndex() == 0 || md.GetTerm() == 0 || md.GetTerm() > m.GetTerm() {
		return DropSnapshot, fmt.Sprintf("index %d term %d in a message of term %d", md.GetIndex(), md.GetTerm(), m.GetTerm())
	}
	if md.GetIndex() <= g.applied {
		return "", "" // Raft ignores a snapshot it has passed
	}
	cs := md.GetConfState()
	if !slices.Contains(cs.GetVoters(), g.self) && !slices.Contains(cs.GetLearners(), g.self) &&
		!slices.Contains(cs.GetVotersOutgoing(), g.self) && !slices.Contains(cs.GetLearnersNext(), g.self) {
		return "", "" // Raft ignores it too
	}
	if err := restorable(cs, md.GetIndex()); err != nil {
		return DropSnapshot, err.Error()
	}
	sm, err := decodeFSM(s.GetData())
	if err != nil {
		return DropSnapshot, err.Error()
	}
	g.received = &receivedSnap{index: md.GetIndex(), term: md.GetTerm(), sm: sm}
	return "", ""
}

// restorable reports whether Raft can restore configuration cs without
// panicking: it must restore, and to an equivalent configuration.
func restorable(cs *pb.ConfState, index uint64) error {
	if len(cs.GetVoters()) == 0 {
		return fmt.Errorf("configuration %v has no voter", cs)
	}
	trk := tracker.MakeProgressTracker(1, 0)
	cfg, prs, err := confchange.Restore(confchange.Changer{Tracker: trk, LastIndex: index}, pb.EnsureConfState(cs))
	if err != nil {
		return fmt.Errorf("configuration %v: %w", cs, err)
	}
	trk.Config, trk.Progress = cfg, prs
	if err := pb.EnsureConfState(cs).Equivalent(trk.ConfState()); err != nil {
		return fmt.Errorf("configuration %v: %w", cs, err)
	}
	return nil
}

// receivedSnap is a snapshot from the leader, decoded when it was checked.
type receivedSnap struct {
	index, term uint64
	sm          *fsm
}
