package raftlease

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/tracker"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/lease"
)

// ErrHolding is returned by Campaign while this member already holds a
// Term.
var ErrHolding = errors.New("raftlease: already holding a term")

// electorState is the run loop's view of the election.
type electorState struct {
	waiters       map[*waiter]struct{}
	held          *Term
	usedTerm      uint64    // the last Raft term in which a Term was granted here
	holderSent    uint64    // the Raft term for which a holder record was proposed
	candidateSent time.Time // when the candidate flag was last proposed
}

type waiter struct{ ch chan campaignResult }

type campaignResult struct {
	t   *Term
	err error
}

func (e *electorState) init() { e.waiters = map[*waiter]struct{}{} }

func (e *electorState) failWaiters(err error) {
	for w := range e.waiters {
		w.ch <- campaignResult{err: err}
		delete(e.waiters, w)
	}
}

// setHeld records the Term this member holds (nil: none).
func (g *Group) setHeld(t *Term) {
	g.el.held = t
	g.hb.setHeld(t)
}

func (g *Group) dropHeld(t *Term) {
	if g.el.held == t {
		g.setHeld(nil)
	}
}

func (e *electorState) tick(g *Group) {
	// A group of one member acknowledges itself.
	if t := e.held; t != nil {
		if q := g.hb.quorumAck(g.clk.Now()); !q.IsZero() {
			t.extend(q.Add(g.cfg.fenceWindow()))
		}
	}
}

// Campaign blocks until this member holds the lease, and returns its Term
// (a *Term). Raft decides who leads; Campaign marks this member as a
// candidate in the replicated log, so a leader that does not campaign
// hands leadership to it, and returns once this member leads, has
// committed its holder record in its term (so reads and writes through it
// are safe) and has a quorum acknowledgement within the fence window. It
// returns ErrHolding while this member holds a Term, lease.ErrClosed
// after Close, and an error wrapping ctx.Err() when ctx ends; then this
// member withdraws its candidacy.
func (g *Group) Campaign(ctx context.Context) (lease.Term, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("raftlease: member %q: campaign: %w", g.cfg.ID, err)
	}
	g.mu.Lock()
	closing := g.closing
	g.mu.Unlock()
	if closing {
		return nil, lease.ErrClosed
	}
	w := &waiter{ch: make(chan campaignResult, 1)}
	var holding *Term
	if err := g.do(ctx, func() {
		if t := g.el.held; t != nil && !t.ended() {
			holding = t
			return
		}
		g.el.waiters[w] = struct{}{}
		g.reconcile(g.rn.BasicStatus())
	}); err != nil {
		return nil, g.campaignErr(err)
	}
	if holding != nil {
		return nil, fmt.Errorf("%w: member %q holds the term with token %d", ErrHolding, g.cfg.ID, holding.raftTerm)
	}
	select {
	case r := <-w.ch:
		if r.err != nil {
			return nil, g.campaignErr(r.err)
		}
		return r.t, nil
	case <-ctx.Done():
	}
	// Withdraw; a Term granted in the meantime is given up again.
	_ = g.do(context.Background(), func() { delete(g.el.waiters, w) })
	select {
	case r := <-w.ch:
		if r.t != nil {
			rctx, cancel := context.WithTimeout(context.Background(), g.cfg.electionTimeout())
			_ = r.t.Resign(rctx)
			cancel()
		}
	default:
	}
	return nil, fmt.Errorf("raftlease: member %q: campaign: %w", g.cfg.ID, ctx.Err())
}

func (g *Group) campaignErr(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("raftlease: member %q: campaign: %w", g.cfg.ID, err)
	}
	return err
}

func (g *Group) currentTerm() *Term {
	var t *Term
	if g.do(context.Background(), func() { t = g.el.held }) != nil {
		return nil
	}
	return t
}

// reconcile is the election's step function, run after every Ready: it
// ends a Term whose leadership is gone, keeps this member's candidacy in
// the log in line with whether it wants the lease, and as leader either
// grants a waiting Campaign or hands leadership to a member that wants
// it.
func (g *Group) reconcile(st raft.BasicStatus) {
	e := &g.el
	if t := e.held; t != nil {
		switch {
		case t.ended():
			g.setHeld(nil)
		case st.RaftState != raft.StateLeader || st.GetTerm() != t.raftTerm:
			t.end(fmt.Errorf("%w: member %q: leadership of term %d lost (now term %d, %s)", lease.ErrLost, g.cfg.ID, t.raftTerm, st.GetTerm(), st.RaftState))
			g.setHeld(nil)
		}
	}
	g.syncCandidate(len(e.waiters) > 0 || e.held != nil)
	if st.RaftState != raft.StateLeader || st.LeadTransferee != raft.None || e.held != nil {
		return
	}
	if len(e.waiters) == 0 {
		if to := g.bestTarget(true); to != raft.None {
			g.log.Info("raftlease: handing leadership to a candidate", "to", g.memberName(to))
			g.rn.TransferLeader(to)
		}
		return
	}
	if e.usedTerm == st.GetTerm() {
		// This term was granted once already; a new Term needs a new
		// Raft term, hence a round through another leader.
		g.transferAway()
		return
	}
	if h := g.sm.holder; h.member != g.self || h.term != st.GetTerm() {
		if e.holderSent != st.GetTerm() {
			c := command{kind: opHolder, origin: g.self, nonce: g.nonce, seq: g.nextSeq(), member: g.self, term: st.GetTerm()}
			if err := g.rn.Propose(c.encode()); err == nil {
				e.holderSent = st.GetTerm()
			}
		}
		return
	}
	now := g.clk.Now()
	q := g.hb.quorumAck(now)
	deadline := q.Add(g.cfg.fenceWindow())
	if q.IsZero() || !now.Before(deadline) {
		return // wait for a quorum to acknowledge this term
	}
	t := newTerm(g, st.GetTerm(), deadline)
	g.setHeld(t)
	e.usedTerm = st.GetTerm()
	for w := range e.waiters {
		delete(e.waiters, w)
		w.ch <- campaignResult{t: t}
		break
	}
	g.log.Info("raftlease: elected", "token", st.GetTerm(), "deadline", deadline)
}

// syncCandidate proposes this member's candidacy flag when the log does
// not show what the member wants, at most every half election timeout.
func (g *Group) syncCandidate(want bool) {
	if g.sm.candidates[g.self] == want || g.lead == raft.None {
		return
	}
	now := g.clk.Now()
	if now.Sub(g.el.candidateSent) < g.cfg.electionTimeout()/2 {
		return
	}
	c := command{kind: opCandidate, origin: g.self, nonce: g.nonce, seq: g.nextSeq(), member: g.self, on: want}
	if err := g.rn.Propose(c.encode()); err == nil {
		g.el.candidateSent = now
	}
}

// transferAway hands leadership to the best other member: a campaigning
// one if any is active, else the most up-to-date voter.
// It reports whether a transfer is under way.
func (g *Group) transferAway() bool {
	if g.role != raft.StateLeader {
		return false
	}
	to := g.bestTarget(true)
	if to == raft.None {
		to = g.bestTarget(false)
	}
	if to == raft.None {
		return false
	}
	g.log.Info("raftlease: transferring leadership", "to", g.memberName(to))
	g.rn.TransferLeader(to)
	return true
}

// bestTarget returns the active voter other than this member with the
// highest match index, among candidates only if asked; raft.None if none.
func (g *Group) bestTarget(candidatesOnly bool) uint64 {
	in, _ := sortedVoters(g.confState)
	voter := map[uint64]bool{}
	for _, id := range in {
		voter[id] = true
	}
	best, bestMatch := uint64(raft.None), uint64(0)
	g.rn.WithProgress(func(id uint64, typ raft.ProgressType, pr tracker.Progress) {
		if id == g.self || !voter[id] || !pr.RecentActive || (candidatesOnly && !g.sm.candidates[id]) {
			return
		}
		if best == raft.None || pr.Match > bestMatch || (pr.Match == bestMatch && id < best) {
			best, bestMatch = id, pr.Match
		}
	})
	return best
}

func (g *Group) nextSeq() uint64 {
	g.seq++
	return g.seq
}

// Leader returns the lease holder as this member knows it: the Raft
// leader, if it announced in its current term that it holds the lease.
// It returns lease.ErrNoLeader otherwise and lease.ErrClosed after Close.
func (g *Group) Leader(ctx context.Context) (lease.Leader, error) {
	if err := ctx.Err(); err != nil {
		return lease.Leader{}, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closing || g.stopErr != nil {
		return lease.Leader{}, lease.ErrClosed
	}
	if g.view.IsZero() {
		return lease.Leader{}, fmt.Errorf("%w: member %q knows of none", lease.ErrNoLeader, g.cfg.ID)
	}
	return g.view, nil
}

// publishView recomputes the lease holder and the Raft leader as this
// member sees them.
func (g *Group) publishView() {
	var l lease.Leader
	h := g.sm.holder
	if g.lead != raft.None && h.member == g.lead && h.term == g.raftTerm {
		if h.member != g.self || g.el.held != nil {
			l = lease.Leader{ID: g.memberName(h.member), Token: fence.Token(h.term), Addr: g.memberAddr(h.member)}
		}
	}
	name := ""
	if g.lead != raft.None {
		name = g.memberName(g.lead)
	}
	g.publish(l, name)
}

// Transfer hands the lease to member to (lease.Transferer): this member's
// Term ends (Done closes) first, then Raft leadership moves to to, which
// starts a new Raft term. It returns once to leads, or when ctx ends. The
// lease follows only if to campaigns; otherwise to hands leadership on to
// a member that does. It fails with ErrNotLeader if this member does not
// lead.
func (g *Group) Transfer(ctx context.Context, to string) error {
	id := RaftID(to)
	var err error
	if derr := g.do(ctx, func() {
		if g.role != raft.StateLeader {
			err = g.notLeaderErr("transfer")
			return
		}
		in, _ := sortedVoters(g.confState)
		found := false
		for _, v := range in {
			found = found || v == id
		}
		if !found {
			err = fmt.Errorf("raftlease: member %q: transfer: %q is not a voting member", g.cfg.ID, to)
			return
		}
		if id == g.self {
			return
		}
		if t := g.el.held; t != nil {
			t.end(fmt.Errorf("%w: member %q handed the term with token %d to %q", lease.ErrResigned, g.cfg.ID, t.raftTerm, to))
			g.setHeld(nil)
		}
		g.el.usedTerm = g.raftTerm
		g.rn.TransferLeader(id)
	}); derr != nil {
		return derr
	}
	if err != nil {
		return err
	}
	return g.waitLead(ctx, func(lead uint64) bool { return lead == id }, 0)
}
