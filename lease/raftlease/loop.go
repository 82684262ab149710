package raftlease

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"time"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/hakit/hakit/lease"
)

// do runs f on the run loop and waits for it to return.
func (g *Group) do(ctx context.Context, f func()) error {
	done := make(chan struct{})
	wrapped := func() { f(); close(done) }
	select {
	case g.actc <- wrapped:
	case <-ctx.Done():
		return ctx.Err()
	case <-g.donec:
		return g.stoppedErr()
	}
	select {
	case <-done:
		return nil
	case <-g.donec:
		// The loop may have run f just before stopping.
		select {
		case <-done:
			return nil
		default:
		}
		return g.stoppedErr()
	}
}

func (g *Group) stoppedErr() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopErr != nil {
		return g.stopErr
	}
	return lease.ErrClosed
}

type handler struct{ g *Group }

func (h handler) Receive(m *pb.Message) {
	g := h.g
	if m.GetType() == pb.MsgHeartbeatResp && !isProbe(m) && !g.hb.receive(m, g.clk.Now()) {
		g.guard.drop(g, DropAck, m, "no stamp of this leader's current term")
		return
	}
	select {
	case g.recvc <- m:
	default: // as if the network lost it
		g.guard.drop(g, DropOverwhelmed, m, "the run loop's queue is full")
	}
}

func (h handler) Unreachable(id uint64) {
	h.g.post(func() { h.g.rn.ReportUnreachable(id) })
}

func (h handler) SnapshotDone(id uint64, ok bool) {
	st := raft.SnapshotFinish
	if !ok {
		st = raft.SnapshotFailure
	}
	h.g.post(func() { h.g.rn.ReportSnapshot(id, st) })
}

// post queues f for the run loop without waiting; it is dropped if the
// loop is overwhelmed or gone (the reports it carries are hints).
func (g *Group) post(f func()) {
	select {
	case g.actc <- f:
	default:
	}
}

// run is the only goroutine that touches the Raft node and the state
// machine.
//
// Ticks come from a timer rather than a ticker so that a follower can
// re-phase them: each heartbeat from its leader restarts the tick timer
// (see step), with a random delay of up to half a tick. Followers of one
// leader then count election ticks from nearly the same instant, the last
// heartbeat, so the first to time out usually finds the others out of
// their lease too, instead of being refused by one whose tick fell a
// little later and waiting another full timeout; the random part breaks
// ties between followers that drew the same timeout, which would
// otherwise split the vote. A follower's lease still lasts at least
// ElectionTicks-1 ticks after the heartbeat, as the fence assumes.
func (g *Group) run() {
	g.tick = g.clk.NewTimer(g.cfg.TickInterval)
	defer g.tick.Stop()
	err := g.loop()
	if err == nil {
		g.shutdown(lease.ErrClosed)
		return
	}
	g.log.Error("raftlease: stopping", "err", err)
	g.shutdown(fmt.Errorf("%w (%w): member %q: %w", ErrStopped, lease.ErrClosed, g.cfg.ID, err))
}

// loop runs until Close (it returns nil) or an error. A panic in it, in
// go.etcd.io/raft, the store or the log, is returned as an error with its
// stack: the member stops, its Term ends, and the rest of the process
// goes on.
func (g *Group) loop() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	for {
		select {
		case <-g.tick.C():
			g.tick.Reset(g.cfg.TickInterval)
			g.rn.Tick()
			g.onTick()
		case m := <-g.recvc:
			if err := g.step(m); err != nil {
				return err
			}
		case f := <-g.actc:
			f()
		case <-g.stopc:
			return nil
		}
		// Take what else is waiting, so that one disk sync covers many
		// proposals.
	more:
		for i := 0; i < 128; i++ {
			select {
			case m := <-g.recvc:
				if err := g.step(m); err != nil {
					return err
				}
			case f := <-g.actc:
				f()
			default:
				break more
			}
		}
		if err := g.processReady(); err != nil {
			return err
		}
	}
}

// PanicError is the cause a Group stops with (wrapped in ErrStopped) when
// its run loop panics: Value is what was passed to panic, Stack where.
type PanicError struct {
	Value any
	Stack []byte
}

// Error gives the panic value and the stack.
func (e *PanicError) Error() string {
	return fmt.Sprintf("raftlease: panic in the run loop: %v\n%s", e.Value, e.Stack)
}

// Unwrap returns the panic value if it is an error.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// shutdown ends everything that waits on the loop with err.
func (g *Group) shutdown(err error) {
	g.mu.Lock()
	g.stopErr = err
	g.mu.Unlock()
	if t := g.el.held; t != nil {
		t.end(fmt.Errorf("%w: member %q stopped: %w", lease.ErrLost, g.cfg.ID, err))
		g.setHeld(nil)
	}
	for id, ch := range g.confWaiters {
		ch <- err
		delete(g.confWaiters, id)
	}
	for id, p := range g.pending {
		p.ch <- result{err: err}
		delete(g.pending, id)
	}
	for id, r := range g.reads {
		r.ch <- readResult{err: err}
		delete(g.reads, id)
	}
	g.el.failWaiters(err)
	g.publish(lease.Leader{}, "")
	close(g.donec)
	g.closeObservers()
}

// step hands an incoming message to Raft, after the group's own checks
// (see check): a message that cannot be legitimate is dropped, counted
// and logged. It fails only if it had to persist a Ready first and that
// failed.
func (g *Group) step(m *pb.Message) error {
	if isProbe(m) {
		if m.GetTo() != g.self || m.GetFrom() == raft.None || m.GetFrom() == g.self {
			g.guard.drop(g, DropMisrouted, m, "start-up probe")
			return nil
		}
		return g.onProbe(m)
	}
	if g.probe != nil {
		return nil // this member does not take part until it knows it may
	}
	if m.GetType() == pb.MsgHeartbeat && g.rn.HasReady() {
		// The commit check compares with the durable log, which must
		// hold what this batch's messages appended.
		if err := g.processReady(); err != nil {
			return err
		}
	}
	if reason, detail := g.check(m); reason != "" {
		g.guard.drop(g, reason, m, detail)
		return nil
	}
	switch m.GetType() {
	case pb.MsgVote, pb.MsgPreVote:
		// A restarted member does not know how recently the leader was
		// heard from, so it could vote a rival in while the leader's
		// lease still runs; it stays out of elections for one election
		// timeout. A leadership transfer is let through: the leader
		// asked for it.
		if string(m.GetContext()) != campaignTransferCtx && g.clk.Now().Before(g.quietUntil) {
			return nil
		}
	case pb.MsgHeartbeat:
		// Re-phase ticks to the leader's heartbeat (see run). Raft
		// resets the election counter on this message, so the ticks a
		// follower skips this way count for nothing.
		if g.role == raft.StateFollower && m.GetFrom() == g.lead {
			g.tick.Reset(g.cfg.TickInterval + rand.N(g.cfg.TickInterval/2))
		}
	}
	if err := g.rn.Step(m); err != nil && !errors.Is(err, raft.ErrStepPeerNotFound) {
		g.log.Debug("raftlease: step", "type", m.GetType().String(), "from", fmt.Sprintf("%x", m.GetFrom()), "err", err)
	}
	return nil
}

// onTick runs the group's own timers: re-issued reads, the lease.
func (g *Group) onTick() {
	if g.probe != nil {
		g.askPeers()
		return
	}
	g.el.tick(g)
}

// campaignTransferCtx is the context go.etcd.io/raft puts on the votes of
// a leadership transfer.
const campaignTransferCtx = "CampaignTransfer"

// processReady runs the Ready cycle in the order Raft requires: persist
// the snapshot, entries and HardState (synced), then send messages, then
// apply committed entries, then Advance.
func (g *Group) processReady() error {
	for g.rn.HasReady() {
		rd := g.rn.Ready()
		if !raft.IsEmptySnap(rd.Snapshot) || len(rd.Entries) > 0 || !raft.IsEmptyHardState(rd.HardState) {
			if err := g.db.Save(rd.HardState, rd.Entries, rd.Snapshot); err != nil {
				return fmt.Errorf("persist Raft state: %w", err)
			}
		}
		if !raft.IsEmptySnap(rd.Snapshot) {
			if err := g.restore(rd.Snapshot); err != nil {
				return err
			}
		}
		g.hb.beginBatch()
		for _, m := range rd.Messages {
			if m.GetType() == pb.MsgHeartbeat {
				g.hb.stamp(g.clk.Now(), m)
			}
			g.tr.Send(m)
		}
		becameLeader := false
		if rd.SoftState != nil {
			becameLeader = rd.SoftState.RaftState == raft.StateLeader && g.role != raft.StateLeader
			g.lead, g.role = rd.SoftState.Lead, rd.SoftState.RaftState
		}
		for _, e := range rd.CommittedEntries {
			if err := g.applyEntry(e); err != nil {
				return err
			}
		}
		for _, rs := range rd.ReadStates {
			g.readIndexReady(rs)
		}
		g.rn.Advance(rd)
		if becameLeader {
			// A new leader's first heartbeats would leave at the next
			// tick; an extra tick sends them now, so the quorum
			// acknowledgement that a Term needs arrives a round trip
			// after the election instead of up to a tick later.
			g.rn.Tick()
		}
		if err := g.maybeSnapshot(); err != nil {
			return err
		}
	}
	g.afterReady()
	return nil
}

// afterReady reacts to what the cycle changed: leadership, the term, the
// lease, pending reads.
func (g *Group) afterReady() {
	st := g.rn.BasicStatus()
	termChanged := st.GetTerm() != g.raftTerm
	g.raftTerm, g.lead, g.role = st.GetTerm(), st.Lead, st.RaftState
	g.received = nil // restored by now if Raft took it
	if st.RaftState == raft.StateLeader {
		g.hb.lead(st.GetTerm())
	} else {
		g.hb.lead(0)
	}
	if termChanged || st.RaftState != raft.StateLeader {
		g.failPending(st)
	}
	if g.campaignAt != 0 && g.applied >= g.campaignAt {
		g.campaignAt = 0
		if st.Lead == raft.None {
			_ = g.rn.Campaign()
		}
	}
	g.serveReads()
	g.retryReads()
	g.reconcile(st)
	g.markLogged()
	g.publishView()
}

// failPending fails the proposals of earlier terms, or all of them once
// this member is not the leader: their outcome is unknown to the caller.
func (g *Group) failPending(st raft.BasicStatus) {
	for id, p := range g.pending {
		if !p.keep && (st.RaftState != raft.StateLeader || p.term != st.GetTerm()) {
			p.ch <- result{err: g.notLeaderErr("write")}
			delete(g.pending, id)
		}
	}
	if st.Lead == raft.None {
		// Unanswered reads go to the next leader (see retryReads).
		for _, r := range g.reads {
			if r.index == 0 {
				r.issued = time.Time{}
			}
		}
	}
}
