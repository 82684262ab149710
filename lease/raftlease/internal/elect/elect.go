// Package elect holds the lease decisions of a raftlease member as a pure
// type: which member the Raft leader hands leadership to, when a member
// that wants the lease announces it, when a Term is granted and until
// when it holds. It reads a View of the member's Raft state and returns
// Actions; it does no I/O, reads no clock and touches no Raft node, so its
// rules are tested as tables of "view -> actions" (see elect_test.go), as
// ha/internal/core does for the Node.
//
// The rules, which package raftlease documents for users:
//
//   - A member that wants the lease (a Campaign waits, or it holds a
//     Term) keeps its candidacy flag in the replicated log; it proposes the
//     flag when the log disagrees, at most once per Params.Resend.
//   - A Raft leader that does not want the lease hands leadership to the
//     most up-to-date active voter that does.
//   - A Raft leader that wants it first commits a holder record naming
//     itself in its Raft term, then grants a Term once a quorum
//     acknowledged a heartbeat recently enough: the Term's deadline is
//     that heartbeat's send time plus Params.FenceWindow, and it must lie
//     ahead.
//   - One Raft term grants at most one Term: a member that held the lease
//     in a term and wants it again hands leadership away first.
//   - A held Term ends as soon as the member stops leading or its Raft
//     term changes.
package elect

import (
	"fmt"
	"time"
)

// Params are a member's fixed election parameters.
type Params struct {
	// Self is this member's Raft ID.
	Self uint64
	// FenceWindow is how long after the send time of a heartbeat that a
	// quorum acknowledged the leader still trusts its Term.
	FenceWindow time.Duration
	// Resend is the least time between two proposals of this member's
	// candidacy flag.
	Resend time.Duration
}

// Holder is the last holder record applied: member led Raft term Term and
// announced in it that it holds the lease.
type Holder struct{ Member, Term uint64 }

// Peer is another member as the Raft leader's progress tracker sees it.
type Peer struct {
	ID        uint64
	Match     uint64 // the highest log index known to be on its disk
	Active    bool   // heard from within the last election timeout
	Voter     bool   // a voter of the current configuration
	Candidate bool   // its candidacy flag is set in the applied log
}

// View is the member's state at one step, read by the run loop.
type View struct {
	Now          time.Time
	Leader       bool   // this member is the Raft leader
	Term         uint64 // the current Raft term
	Lead         uint64 // the Raft leader's ID, 0 if unknown
	Transferring bool   // a leadership transfer is under way
	Holder       Holder // the applied holder record
	Candidate    bool   // this member's candidacy flag in the applied log
	Waiting      bool   // a Campaign is waiting for a Term
	QuorumAck    time.Time
	// Peers are the other members with their progress; the leader's
	// view only (followers do not track progress).
	Peers []Peer
}

// Action is something the run loop must do, in the order given.
type Action interface{ isAction() }

type (
	// EndTerm ends the held Term of Raft term Term: its leadership is
	// gone.
	EndTerm struct {
		Term   uint64
		Reason string
	}
	// ProposeCandidate proposes this member's candidacy flag.
	ProposeCandidate struct{ On bool }
	// ProposeHolder proposes the holder record naming this member as the
	// lease holder in Raft term Term.
	ProposeHolder struct{ Term uint64 }
	// Transfer hands Raft leadership to member To.
	Transfer struct {
		To  uint64
		Why string
	}
	// Grant gives a waiting Campaign a Term of Raft term Term, which
	// holds until Deadline unless a later acknowledgement moves it.
	Grant struct {
		Term     uint64
		Deadline time.Time
	}
)

func (EndTerm) isAction()          {}
func (ProposeCandidate) isAction() {}
func (ProposeHolder) isAction()    {}
func (Transfer) isAction()         {}
func (Grant) isAction()            {}

// Elector is the decision state of one member. The zero value is not
// usable; make one with New. It is not safe for concurrent use: the run
// loop owns it.
type Elector struct {
	p             Params
	held          uint64    // Raft term of the Term held, 0 for none
	usedTerm      uint64    // the last Raft term in which a Term was granted
	holderSent    uint64    // the Raft term for which a holder record was proposed
	candidateSent time.Time // when the candidacy flag was last proposed
}

// New returns the Elector of a member with parameters p.
func New(p Params) *Elector { return &Elector{p: p} }

// Held returns the Raft term of the Term this member holds, 0 for none.
func (e *Elector) Held() uint64 { return e.held }

// Deadline returns the self-fence deadline that a quorum acknowledgement
// of a heartbeat sent at ack gives: ack plus the fence window. A zero ack
// gives the zero time.
func (e *Elector) Deadline(ack time.Time) time.Time {
	if ack.IsZero() {
		return time.Time{}
	}
	return ack.Add(e.p.FenceWindow)
}

// Step is the election's step function, run after every Raft Ready: it
// ends a Term whose leadership is gone, keeps the candidacy flag in line
// with what the member wants, and as leader either grants a waiting
// Campaign or hands leadership to a member that wants it.
func (e *Elector) Step(v View) []Action {
	var acts []Action
	if e.held != 0 && (!v.Leader || v.Term != e.held) {
		acts = append(acts, EndTerm{Term: e.held, Reason: fmt.Sprintf("leadership of term %d lost (now term %d, leader %x)", e.held, v.Term, v.Lead)})
		e.held = 0
	}
	acts = append(acts, e.syncCandidate(v, v.Waiting || e.held != 0)...)
	if !v.Leader || v.Transferring || e.held != 0 {
		return acts
	}
	if !v.Waiting {
		if to := bestTarget(v.Peers, true); to != 0 {
			acts = append(acts, Transfer{To: to, Why: "handing leadership to a candidate"})
		}
		return acts
	}
	if e.usedTerm == v.Term {
		// This term was granted once already; a new Term needs a new
		// Raft term, hence a round through another leader.
		return append(acts, e.transferAway(v)...)
	}
	if v.Holder.Member != e.p.Self || v.Holder.Term != v.Term {
		if e.holderSent != v.Term {
			e.holderSent = v.Term
			acts = append(acts, ProposeHolder{Term: v.Term})
		}
		return acts
	}
	deadline := e.Deadline(v.QuorumAck)
	if deadline.IsZero() || !v.Now.Before(deadline) {
		return acts // wait for a quorum to acknowledge this term
	}
	e.held, e.usedTerm = v.Term, v.Term
	return append(acts, Grant{Term: v.Term, Deadline: deadline})
}

// syncCandidate proposes the candidacy flag when the applied log does not
// show what the member wants, while a leader is known to take the
// proposal, at most once per Resend.
func (e *Elector) syncCandidate(v View, want bool) []Action {
	if v.Candidate == want || v.Lead == 0 || v.Now.Sub(e.candidateSent) < e.p.Resend {
		return nil
	}
	e.candidateSent = v.Now
	return []Action{ProposeCandidate{On: want}}
}

// Dropped undoes the bookkeeping of a proposal the Raft node refused, so
// that it is proposed again at a later step.
func (e *Elector) Dropped(a Action) {
	switch a := a.(type) {
	case ProposeHolder:
		if e.holderSent == a.Term {
			e.holderSent = 0
		}
	case ProposeCandidate:
		e.candidateSent = time.Time{}
	}
}

// Released records that the Term of Raft term term ended outside Step
// (its deadline passed, it was resigned).
func (e *Elector) Released(term uint64) {
	if e.held == term {
		e.held = 0
	}
}

// TransferAway hands leadership to the best other member: an active
// candidate if there is one, else the most up-to-date active voter. It
// returns nothing if this member does not lead or nobody can take over.
func (e *Elector) TransferAway(v View) []Action {
	if !v.Leader {
		return nil
	}
	return e.transferAway(v)
}

func (e *Elector) transferAway(v View) []Action {
	to := bestTarget(v.Peers, true)
	if to == 0 {
		to = bestTarget(v.Peers, false)
	}
	if to == 0 {
		return nil
	}
	return []Action{Transfer{To: to, Why: "transferring leadership"}}
}

// HandOver hands the lease to member to (lease.Transferer): the held Term
// ends first, and this Raft term grants no further Term here.
func (e *Elector) HandOver(v View, to uint64) []Action {
	var acts []Action
	if e.held != 0 {
		acts = append(acts, EndTerm{Term: e.held, Reason: "handed over"})
		e.held = 0
	}
	e.usedTerm = v.Term
	return append(acts, Transfer{To: to, Why: "handing the lease over"})
}

// Withdraw proposes the candidacy flag off at once, whatever Resend
// says, when the applied log shows this member as a candidate and a
// leader is known: a member going away must not be handed leadership.
func (e *Elector) Withdraw(v View) []Action {
	if !v.Candidate || v.Lead == 0 {
		return nil
	}
	e.candidateSent = v.Now
	return []Action{ProposeCandidate{On: false}}
}

// bestTarget returns the active voter with the highest match index, among
// candidates only if asked, the lower ID breaking a tie; 0 if none.
func bestTarget(peers []Peer, candidatesOnly bool) uint64 {
	var best, bestMatch uint64
	for _, p := range peers {
		if !p.Voter || !p.Active || (candidatesOnly && !p.Candidate) {
			continue
		}
		if best == 0 || p.Match > bestMatch || (p.Match == bestMatch && p.ID < best) {
			best, bestMatch = p.ID, p.Match
		}
	}
	return best
}
