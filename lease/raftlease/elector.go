package raftlease

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/tracker"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/lease"
	"github.com/hakit/hakit/lease/raftlease/internal/elect"
)

// ErrHolding is returned by Campaign while this member already holds a
// Term.
var ErrHolding = errors.New("raftlease: already holding a term")

// electorState is the run loop's side of the election: the Campaigns
// waiting, the Term held, and the decisions (package elect), which the
// run loop carries out (see reconcile).
type electorState struct {
	waiters map[*waiter]struct{}
	held    *Term
	dec     *elect.Elector
}

type waiter struct{ ch chan campaignResult }

type campaignResult struct {
	t   *Term
	err error
}

func (e *electorState) init(p elect.Params) {
	e.waiters = map[*waiter]struct{}{}
	e.dec = elect.New(p)
}

func (e *electorState) failWaiters(err error) {
	for w := range e.waiters {
		w.ch <- campaignResult{err: err}
		delete(e.waiters, w)
	}
}

// setHeld records the Term this member holds (nil: none).
func (g *Group) setHeld(t *Term) {
	if t == nil && g.el.held != nil {
		g.el.dec.Released(g.el.held.raftTerm)
	}
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
		if d := e.dec.Deadline(g.hb.quorumAck(g.clk.Now())); !d.IsZero() {
			t.extend(d)
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

// reconcile runs the election's step function (package elect) after
// every Ready and carries out what it decides.
func (g *Group) reconcile(st raft.BasicStatus) {
	if t := g.el.held; t != nil && t.ended() {
		g.el.dec.Released(t.raftTerm)
		g.setHeld(nil)
	}
	g.act(g.el.dec.Step(g.electionView(st)))
}

// electionView is the state the election's decisions read.
func (g *Group) electionView(st raft.BasicStatus) elect.View {
	now := g.clk.Now()
	v := elect.View{
		Now:          now,
		Leader:       st.RaftState == raft.StateLeader,
		Term:         st.GetTerm(),
		Lead:         st.Lead,
		Transferring: st.LeadTransferee != raft.None,
		Holder:       elect.Holder{Member: g.sm.holder.member, Term: g.sm.holder.term},
		Candidate:    g.sm.candidates[g.self],
		Waiting:      len(g.el.waiters) > 0,
		QuorumAck:    g.hb.quorumAck(now),
	}
	if v.Leader {
		in, _ := sortedVoters(g.confState)
		g.rn.WithProgress(func(id uint64, _ raft.ProgressType, pr tracker.Progress) {
			if id != g.self {
				v.Peers = append(v.Peers, elect.Peer{ID: id, Match: pr.Match, Active: pr.RecentActive,
					Voter: slices.Contains(in, id), Candidate: g.sm.candidates[id]})
			}
		})
	}
	return v
}

// act carries out the election's decisions, in order.
func (g *Group) act(acts []elect.Action) {
	for _, a := range acts {
		switch a := a.(type) {
		case elect.EndTerm:
			if t := g.el.held; t != nil && t.raftTerm == a.Term {
				t.end(fmt.Errorf("%w: member %q: %s", lease.ErrLost, g.cfg.ID, a.Reason))
				g.setHeld(nil)
			}
		case elect.ProposeCandidate:
			c := command{kind: opCandidate, origin: g.self, nonce: g.nonce, seq: g.nextSeq(), member: g.self, on: a.On}
			if g.rn.Propose(c.encode()) != nil {
				g.el.dec.Dropped(a)
			}
		case elect.ProposeHolder:
			c := command{kind: opHolder, origin: g.self, nonce: g.nonce, seq: g.nextSeq(), member: g.self, term: a.Term, addr: g.cfg.APIAddr}
			if g.rn.Propose(c.encode()) != nil {
				g.el.dec.Dropped(a)
			}
		case elect.Transfer:
			g.log.Info("raftlease: "+a.Why, "to", g.memberName(a.To))
			g.rn.TransferLeader(a.To)
		case elect.Grant:
			t := newTerm(g, a.Term, a.Deadline)
			g.setHeld(t)
			for w := range g.el.waiters {
				delete(g.el.waiters, w)
				w.ch <- campaignResult{t: t}
				break
			}
			g.log.Info("raftlease: elected", "token", a.Term, "deadline", a.Deadline)
		}
	}
}

// transferAway hands leadership to the best other member: a campaigning
// one if any is active, else the most up-to-date voter. It reports
// whether a transfer is under way.
func (g *Group) transferAway() bool {
	acts := g.el.dec.TransferAway(g.electionView(g.rn.BasicStatus()))
	g.act(acts)
	return len(acts) > 0
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
			l = lease.Leader{ID: g.memberName(h.member), Token: fence.Token(h.term), Addr: h.addr}
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
		// The Term ended with ErrResigned above; HandOver's EndTerm finds
		// nothing held.
		g.act(g.el.dec.HandOver(g.electionView(g.rn.BasicStatus()), id))
	}); derr != nil {
		return derr
	}
	if err != nil {
		return err
	}
	return g.waitLead(ctx, func(lead uint64) bool { return lead == id }, 0)
}
