package raftlease

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
)

// A member that starts with an empty data directory cannot tell from its
// disk whether it is one of the members of a new group or one whose disk
// was wiped or replaced. The second must never bootstrap a second log,
// nor act as the voter it was: it forgot the entries it acknowledged and
// the votes it cast, and a majority counting it could lose a committed
// write or elect two leaders in one term. So such a member asks its peers
// (Config.Peers) first, before it takes any part in the group:
//
//   - If every other peer answers that it has no log either, or only the
//     log a bootstrap writes (entries of term 1: no leader was ever
//     elected in it, nothing was written, nobody acknowledged anything a
//     leader counted), and Join is not set, the group is new: it
//     bootstraps it from Peers, as the others did or will.
//   - Otherwise it waits for the Raft leader's answer. If the leader has
//     this member as a voter known to have held a log (a leader saw it
//     acknowledge an entry; the replicated store records it), the member
//     stops with ErrWipedMember: it must be removed and added again (see
//     the package doc, "Replacing a member's disk"). If not (it was
//     removed and added again, or it never got to write anything), it
//     joins and receives the log from the leader, bootstrapping nothing.
//   - Until then it drops every Raft message and keeps asking.
//
// The questions and answers are Raft messages that never reach Raft: type
// MsgHeartbeat (question) or MsgHeartbeatResp (answer), term 0, context
// "HKPR" | version u8 [| flags u8]. Under TLS the answers come from
// authenticated members; under Insecure anyone can answer.

// ErrWipedMember is wrapped by the error a member stops with when it
// started with an empty data directory but the group's leader knows it as
// a voter that held a log.
var ErrWipedMember = errors.New("raftlease: member lost its log")

const (
	probeMagic   = "HKPR"
	probeVersion = 1

	probeHasLog = 1 << iota // the answering member has a log
	probeLeader             // it is the Raft leader
	probeVoter              // it has the asking member as a voter
	probeLogged             // it knows the asking member held a log
	probeNewLog             // its log holds only a bootstrap's entries (term 1)

	// probeLogInterval is how often a member still asking logs whom it
	// waits for.
	probeLogInterval = 5 * time.Second
)

// probeAnswer is what one peer said.
type probeAnswer struct{ hasLog, leader, voter, logged, newLog bool }

func (a probeAnswer) flags() byte {
	var f byte
	for _, b := range []struct {
		on  bool
		bit byte
	}{{a.hasLog, probeHasLog}, {a.leader, probeLeader}, {a.voter, probeVoter}, {a.logged, probeLogged}, {a.newLog, probeNewLog}} {
		if b.on {
			f |= b.bit
		}
	}
	return f
}

func encodeProbeQuestion() []byte { return append([]byte(probeMagic), probeVersion) }

func encodeProbeAnswer(a probeAnswer) []byte {
	return append([]byte(probeMagic), probeVersion, a.flags())
}

// isProbe reports whether m is a question or an answer of the start-up
// probe rather than a Raft message.
func isProbe(m *pb.Message) bool {
	t := m.GetType()
	return m.GetTerm() == 0 && (t == pb.MsgHeartbeat || t == pb.MsgHeartbeatResp) &&
		len(m.GetContext()) >= len(probeMagic) && string(m.GetContext()[:len(probeMagic)]) == probeMagic
}

// decodeProbeAnswer reads the context of an answer.
func decodeProbeAnswer(ctx []byte) (probeAnswer, error) {
	if len(ctx) != len(probeMagic)+2 || string(ctx[:len(probeMagic)]) != probeMagic {
		return probeAnswer{}, fmt.Errorf("%w: probe answer of %d bytes", ErrCorrupt, len(ctx))
	}
	if v := ctx[len(probeMagic)]; v != probeVersion {
		return probeAnswer{}, fmt.Errorf("%w: probe answer version %d, want %d", ErrCorrupt, v, probeVersion)
	}
	f := ctx[len(probeMagic)+1]
	if f&^(probeHasLog|probeLeader|probeVoter|probeLogged|probeNewLog) != 0 || (f&probeNewLog != 0 && f&probeHasLog == 0) {
		return probeAnswer{}, fmt.Errorf("%w: probe answer flags %#x", ErrCorrupt, f)
	}
	return probeAnswer{hasLog: f&probeHasLog != 0, leader: f&probeLeader != 0, voter: f&probeVoter != 0,
		logged: f&probeLogged != 0, newLog: f&probeNewLog != 0}, nil
}

// probeDecision is what a member asking its peers does next.
type probeDecision int

const (
	probeWait      probeDecision = iota // keep asking
	probeBootstrap                      // every peer is new: bootstrap the group
	probeJoin                           // the leader does not count on a log here: take the leader's
	probeRefuse                         // the leader counts on a log this member lost
)

// decideProbe is the rule above, over the latest answer of each peer.
// peers are the other configured members; join forbids bootstrapping.
func decideProbe(join bool, peers []uint64, answers map[uint64]probeAnswer) (probeDecision, uint64) {
	for _, id := range slices.Sorted(maps.Keys(answers)) {
		if a := answers[id]; a.leader && a.hasLog {
			if a.voter && a.logged {
				return probeRefuse, id
			}
			return probeJoin, id
		}
	}
	if join {
		return probeWait, 0
	}
	for _, id := range peers {
		if a, ok := answers[id]; !ok || (a.hasLog && !a.newLog) {
			return probeWait, 0
		}
	}
	return probeBootstrap, 0
}

// prober is the run loop's state while a member asks its peers.
type prober struct {
	answers map[uint64]probeAnswer
	since   time.Time
	logged  time.Time // last "still waiting" log line
}

// probePeers are the configured peers other than this member.
func (g *Group) probePeers() []uint64 {
	var ids []uint64
	for name := range g.cfg.Peers {
		if id := RaftID(name); id != g.self {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// askPeers sends the question to every peer that has not answered, and
// says from time to time whom the member waits for.
func (g *Group) askPeers() {
	p := g.probe
	now := g.clk.Now()
	var waiting []string
	for _, id := range g.probePeers() {
		// Everyone, every tick: an answer changes (a new member
		// bootstraps, the leader moves).
		g.tr.Send(&pb.Message{Type: pb.MsgHeartbeat.Enum(), From: new(g.self), To: new(id), Term: new(uint64(0)), Context: encodeProbeQuestion()})
		if _, ok := p.answers[id]; !ok {
			waiting = append(waiting, g.memberName(id))
		}
	}
	if now.Sub(p.logged) >= probeLogInterval {
		p.logged = now
		g.log.Info("raftlease: empty data directory: asking the peers whether the group exists before taking part",
			"no_answer_from", waiting, "asking_for", now.Sub(p.since).Round(time.Millisecond))
	}
}

// onProbe answers a question, or takes an answer in and acts on the
// decision. It fails only when this member must not take part.
func (g *Group) onProbe(m *pb.Message) error {
	from := m.GetFrom()
	if m.GetType() == pb.MsgHeartbeat {
		in, out := sortedVoters(g.confState)
		last := g.lastIndex()
		lastTerm, _ := g.db.Term(last)
		a := probeAnswer{
			hasLog: g.probe == nil && last > 0,
			newLog: g.probe == nil && last > 0 && lastTerm <= 1,
			leader: g.role == raft.StateLeader,
			voter:  slices.Contains(in, from) || slices.Contains(out, from),
			logged: g.sm.logged[from],
		}
		g.tr.Send(&pb.Message{Type: pb.MsgHeartbeatResp.Enum(), From: new(g.self), To: new(from), Term: new(uint64(0)), Context: encodeProbeAnswer(a)})
		return nil
	}
	if g.probe == nil {
		return nil // decided already
	}
	a, err := decodeProbeAnswer(m.GetContext())
	if err != nil {
		g.guard.drop(g, DropType, m, err.Error())
		return nil
	}
	g.probe.answers[from] = a
	switch d, leader := decideProbe(g.cfg.Join, g.probePeers(), g.probe.answers); d {
	case probeBootstrap:
		g.probe = nil
		return g.bootstrap()
	case probeJoin:
		g.probe = nil
		g.quietUntil = g.clk.Now().Add(time.Duration(g.cfg.ElectionTicks) * g.cfg.TickInterval)
		g.log.Info("raftlease: the group exists; waiting for its log from the leader", "leader", g.memberName(leader))
	case probeRefuse:
		return fmt.Errorf("%w: member %q started with an empty data directory (%s), but the leader %q has it as a voter that "+
			"held a log: it forgot what it acknowledged and voted, so it must not rejoin as that voter. On the leader call "+
			"RemoveMember(%q), then AddMember(%q, address), then start this member again (package doc: Replacing a member's disk)",
			ErrWipedMember, g.cfg.ID, g.cfg.DataDir, g.memberName(leader), g.cfg.ID, g.cfg.ID)
	}
	return nil
}

// markLogged records, as leader, that members (this one included) hold a
// log, once for each: the first time one acknowledges an entry.
func (g *Group) markLogged() {
	if g.role != raft.StateLeader {
		return
	}
	if g.loggedSent == nil {
		g.loggedSent = map[uint64]uint64{}
	}
	var ids []uint64
	g.rn.WithProgress(func(id uint64, _ raft.ProgressType, pr tracker.Progress) {
		if !g.sm.logged[id] && g.loggedSent[id] != g.raftTerm && (id == g.self || pr.Match > 0) {
			ids = append(ids, id)
		}
	})
	for _, id := range ids {
		c := command{kind: opLogged, origin: g.self, nonce: g.nonce, seq: g.nextSeq(), member: id}
		if g.rn.Propose(c.encode()) == nil {
			g.loggedSent[id] = g.raftTerm
		}
	}
}
