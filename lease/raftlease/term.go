package raftlease

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/lease"
)

// Term is a member's tenure as lease holder: the Raft term in which it
// leads, announced through the log. It implements lease.Term.
//
// Done closes, with Err wrapping lease.ErrLost, as soon as the member
// steps down (CheckQuorum found no quorum, a higher term appeared, it was
// removed), its term changes, or its self-fence deadline passes: the last
// time a quorum acknowledged a heartbeat, plus (ElectionTicks-1) ticks,
// minus DriftMargin. No other member can be elected before that deadline
// plus DriftMargin, so a holder cut off from the majority stops before a
// successor starts, as long as the members' clocks drift apart by less
// than DriftMargin per election timeout.
type Term struct {
	g        *Group
	raftTerm uint64

	done chan struct{}
	once sync.Once

	mu       sync.Mutex
	err      error
	deadline time.Time
	moved    chan struct{} // signalled when deadline moves
}

var _ lease.Term = (*Term)(nil)

func newTerm(g *Group, raftTerm uint64, deadline time.Time) *Term {
	t := &Term{g: g, raftTerm: raftTerm, done: make(chan struct{}), deadline: deadline, moved: make(chan struct{}, 1)}
	go t.watch()
	return t
}

// Token returns the Raft term in which this member leads.
func (t *Term) Token() fence.Token { return fence.Token(t.raftTerm) }

// Done is closed when the term ends or can no longer be trusted.
func (t *Term) Done() <-chan struct{} { return t.done }

// Err is nil while the term is held, and says why it ended afterwards.
func (t *Term) Err() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err
}

// Deadline returns the current self-fence deadline: the term ends then
// unless a quorum acknowledges the leader again before.
func (t *Term) Deadline() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.deadline
}

// Resign ends the term (Done closes first) and hands Raft leadership to
// the most up-to-date member that campaigns, or failing that to the most
// up-to-date voter, which then leads within about one round trip. It
// waits until leadership has moved, ctx ends, or an election timeout
// passed (a group of one member cannot hand leadership on). Resigning an
// ended term is a no-op that returns nil.
func (t *Term) Resign(ctx context.Context) error {
	if !t.end(fmt.Errorf("%w: member %q resigned the term with token %d", lease.ErrResigned, t.g.cfg.ID, t.raftTerm)) {
		return nil
	}
	g := t.g
	moving := false
	if err := g.do(ctx, func() {
		g.dropHeld(t)
		moving = g.transferAway()
	}); err != nil {
		if errors.Is(err, lease.ErrClosed) || errors.Is(err, ErrStopped) {
			return nil
		}
		return err
	}
	if !moving {
		return nil // nobody to hand over to
	}
	return g.waitLead(ctx, func(lead uint64) bool { return lead != g.self }, g.cfg.electionTimeout()+g.cfg.TickInterval)
}

// end closes Done with err unless the term has ended already, and reports
// whether it did.
func (t *Term) end(err error) bool {
	ended := false
	t.once.Do(func() {
		t.mu.Lock()
		t.err = err
		t.mu.Unlock()
		close(t.done)
		ended = true
		t.g.log.Info("raftlease: term ended", "token", t.raftTerm, "err", err)
	})
	return ended
}

func (t *Term) ended() bool {
	select {
	case <-t.done:
		return true
	default:
		return false
	}
}

// extend moves the self-fence deadline later.
func (t *Term) extend(d time.Time) {
	t.mu.Lock()
	moved := d.After(t.deadline)
	if moved {
		t.deadline = d
	}
	t.mu.Unlock()
	if moved {
		select {
		case t.moved <- struct{}{}:
		default:
		}
	}
}

// watch ends the term at its self-fence deadline. It runs on its own
// timer rather than the tick so that Done never closes late.
func (t *Term) watch() {
	clk := t.g.clk
	for {
		d := t.Deadline().Sub(clk.Now())
		if d <= 0 {
			t.end(fmt.Errorf("%w: member %q: self-fence deadline of the term with token %d passed without a quorum acknowledgement", lease.ErrLost, t.g.cfg.ID, t.raftTerm))
			return
		}
		timer := clk.NewTimer(d)
		select {
		case <-timer.C():
		case <-t.moved:
			// The deadline only moves later; waiting on the old timer
			// would be correct too, but rearming keeps one timer armed.
			timer.Stop()
		case <-t.done:
			timer.Stop()
			return
		}
	}
}
