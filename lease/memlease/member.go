package memlease

import (
	"context"
	"fmt"
	"time"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/lease"
	"github.com/hakit/hakit/lease/clock"
)

// Elector is one member's lease.Elector in an Election. It is safe for
// concurrent use.
type Elector struct {
	e        *Election
	id, addr string
	closedc  chan struct{} // closed by Close

	// Guarded by e.mu.
	cut, paused, closed bool
	req                 *request // the campaign in progress, or nil
	term                *term    // the term this member believes it holds, or nil
	renew, fence        clock.Timer
	observers           map[*observer]struct{}
}

var _ lease.Elector = (*Elector)(nil)

// request is one waiting Campaign.
type request struct {
	m       *Elector
	granted chan *term // buffered: grant never blocks
}

// ID returns the member's ID.
func (m *Elector) ID() string { return m.id }

// Campaign waits in the election's queue until this member is granted the
// lease, and returns its Term. Campaigns are granted oldest first, skipping
// members that are cut off or paused. It fails with ErrHolding if this
// member holds a term, ErrCampaigning if it is campaigning already, wraps lease.ErrClosed after Close,
// and wraps ctx's error when ctx ends first; in every failure the member is
// no longer queued, and a lease granted at the same instant is released.
func (m *Elector) Campaign(ctx context.Context) (lease.Term, error) {
	e := m.e
	e.mu.Lock()
	switch {
	case m.closed:
		e.mu.Unlock()
		return nil, fmt.Errorf("memlease: campaign of member %q: %w", m.id, lease.ErrClosed)
	case m.term != nil:
		t := m.term
		e.mu.Unlock()
		return nil, fmt.Errorf("%w: member %q term %d", ErrHolding, m.id, t.token)
	case m.req != nil:
		e.mu.Unlock()
		return nil, fmt.Errorf("%w: member %q", ErrCampaigning, m.id)
	case ctx.Err() != nil:
		e.mu.Unlock()
		return nil, fmt.Errorf("memlease: campaign of member %q: %w", m.id, ctx.Err())
	}
	r := &request{m: m, granted: make(chan *term, 1)}
	m.req = r
	e.queue = append(e.queue, r)
	e.grant()
	e.mu.Unlock()

	var err error
	select {
	case t := <-r.granted:
		return t, nil
	case <-ctx.Done():
		err = fmt.Errorf("memlease: campaign of member %q: %w", m.id, ctx.Err())
	case <-m.closedc:
		err = fmt.Errorf("memlease: campaign of member %q: %w", m.id, lease.ErrClosed)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	select {
	case t := <-r.granted:
		// Granted while we gave up: hand it straight back. (After Close
		// the term has ended already.)
		if t.err == nil {
			m.endTerm(t, fmt.Errorf("memlease: member %q term %d: campaign abandoned: %w", m.id, t.token, lease.ErrResigned))
			if !m.cut && e.holder == t {
				e.release()
			}
		}
	default:
		for i, q := range e.queue {
			if q == r {
				e.queue = append(e.queue[:i:i], e.queue[i+1:]...)
				break
			}
		}
		if m.req == r {
			m.req = nil
		}
	}
	return nil, err
}

// Leader returns the election's current holder. It wraps lease.ErrNoLeader
// when there is none, ErrCutOff while this member is isolated and
// lease.ErrClosed after Close.
func (m *Elector) Leader(ctx context.Context) (lease.Leader, error) {
	if err := ctx.Err(); err != nil {
		return lease.Leader{}, fmt.Errorf("memlease: leader for member %q: %w", m.id, err)
	}
	e := m.e
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case m.closed:
		return lease.Leader{}, fmt.Errorf("memlease: leader for member %q: %w", m.id, lease.ErrClosed)
	case m.cut:
		return lease.Leader{}, fmt.Errorf("%w: %q", ErrCutOff, m.id)
	case e.leader.IsZero():
		return lease.Leader{}, fmt.Errorf("memlease: leader for member %q: %w", m.id, lease.ErrNoLeader)
	}
	return e.leader, nil
}

// Observe delivers the holder at once and then every change, in order,
// with the zero Leader for "no holder". Delivery stalls while the member is
// cut off or paused and resumes, with nothing dropped, after Heal or
// Resume. The channel is closed when ctx ends or the Elector is closed;
// changes not yet received then are discarded.
func (m *Elector) Observe(ctx context.Context) <-chan lease.Leader {
	out := make(chan lease.Leader)
	e := m.e
	e.mu.Lock()
	if m.closed {
		e.mu.Unlock()
		close(out)
		return out
	}
	o := &observer{queue: []lease.Leader{e.leader}}
	m.observers[o] = struct{}{}
	e.mu.Unlock()
	go m.forward(ctx, o, out)
	return out
}

// observer is the queue of one Observe call; guarded by e.mu.
type observer struct {
	queue []lease.Leader
}

func (m *Elector) forward(ctx context.Context, o *observer, out chan<- lease.Leader) {
	e := m.e
	defer close(out)
	defer func() {
		e.mu.Lock()
		delete(m.observers, o)
		e.mu.Unlock()
	}()
	for {
		e.mu.Lock()
		for !m.closed && (m.cut || m.paused || len(o.queue) == 0) {
			changed := e.changed
			e.mu.Unlock()
			select {
			case <-changed:
			case <-ctx.Done():
				return
			}
			e.mu.Lock()
		}
		if m.closed {
			e.mu.Unlock()
			return
		}
		l := o.queue[0]
		o.queue = o.queue[1:]
		e.mu.Unlock()
		select {
		case out <- l:
		case <-ctx.Done():
			return
		case <-m.closedc:
			return
		}
	}
}

// Close resigns a term this member holds (its Err wraps lease.ErrResigned),
// withdraws a waiting campaign (which returns an error wrapping
// lease.ErrClosed), stops the member's timers and closes its observers. The
// ID becomes free for a new Member. Closing again is a no-op.
func (m *Elector) Close() error {
	e := m.e
	e.mu.Lock()
	defer e.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	close(m.closedc)
	if t := m.term; t != nil {
		m.endTerm(t, fmt.Errorf("memlease: member %q term %d: elector closed: %w", m.id, t.token, lease.ErrResigned))
		if !m.cut && e.holder == t {
			e.release()
		}
	}
	if r := m.req; r != nil {
		for i, q := range e.queue {
			if q == r {
				e.queue = append(e.queue[:i:i], e.queue[i+1:]...)
				break
			}
		}
		m.req = nil
	}
	if e.members[m.id] == m {
		delete(e.members, m.id)
	}
	e.notify()
	return nil
}

// onRenew is the renewal timer's step.
func (m *Elector) onRenew() {
	m.e.mu.Lock()
	defer m.e.mu.Unlock()
	if t := m.term; t != nil && !m.paused && !m.closed {
		m.renewLocked(t)
	}
}

// renewLocked sends a renewal of t and schedules the next one. A renewal
// that reaches the election moves both the expiry and the self-fencing
// deadline; one from a member cut off goes nowhere. e.mu must be held.
func (m *Elector) renewLocked(t *term) {
	e := m.e
	m.renew = resetTimer(e.clk, m.renew, e.opts.RenewInterval, m.onRenew)
	if m.cut {
		return
	}
	if e.holder != t {
		m.lose(t, "lease no longer held by the election")
		return
	}
	now := e.clk.Now()
	e.expires = now.Add(e.opts.TTL)
	e.expiry = resetTimer(e.clk, e.expiry, e.opts.TTL, e.onExpiry)
	t.deadline = now.Add(e.opts.TTL - e.opts.DriftMargin)
	m.fence = resetTimer(e.clk, m.fence, e.opts.TTL-e.opts.DriftMargin, m.onFence)
}

// onFence is the self-fencing timer's step.
func (m *Elector) onFence() {
	m.e.mu.Lock()
	defer m.e.mu.Unlock()
	if t := m.term; t != nil && !m.paused && !m.closed && !m.e.clk.Now().Before(t.deadline) {
		m.lose(t, "self-fencing deadline passed")
	}
}

// lose ends t because the member can no longer be sure it holds the lease,
// and, if the election can hear it and still counts t, releases it so that a
// successor need not wait for the expiry. e.mu must be held.
func (m *Elector) lose(t *term, why string) {
	m.endTerm(t, m.lostErr(t, why))
	if e := m.e; !m.cut && e.holder == t {
		e.release()
	}
}

func (m *Elector) lostErr(t *term, why string) error {
	return fmt.Errorf("memlease: member %q term %d: %s: %w", m.id, t.token, why, lease.ErrLost)
}

// endTerm closes t's Done with err and stops the member's timers. e.mu must
// be held.
func (m *Elector) endTerm(t *term, err error) {
	if t.err != nil {
		return
	}
	t.err = err
	close(t.done)
	if m.term == t {
		m.term = nil
		if m.renew != nil {
			m.renew.Stop()
		}
		if m.fence != nil {
			m.fence.Stop()
		}
	}
	m.e.notify()
}

// term is a lease.Term of memlease.
type term struct {
	m     *Elector
	token fence.Token
	done  chan struct{}

	// Guarded by m.e.mu.
	err      error
	deadline time.Time // self-fencing deadline
}

func (t *term) Token() fence.Token    { return t.token }
func (t *term) Done() <-chan struct{} { return t.done }

// Deadline returns the self-fencing deadline: last renewal that reached
// the election + TTL - DriftMargin, on the Election's clock. A paused
// member's deadline stays where it was, so that an answer checked against
// it (lease.Valid) is false once the clock passes it, although Done stays
// open until Resume.
func (t *term) Deadline() time.Time {
	t.m.e.mu.Lock()
	defer t.m.e.mu.Unlock()
	return t.deadline
}

func (t *term) Err() error {
	t.m.e.mu.Lock()
	defer t.m.e.mu.Unlock()
	return t.err
}

// Resign closes Done (Err wraps lease.ErrResigned) and then releases the
// lease, so the oldest waiting campaign is granted at once. A member that is
// cut off cannot tell the election: its lease is then released when the
// member heals or runs out at the expiry, whichever comes first.
// Resign never blocks; ctx is not used.
func (t *term) Resign(ctx context.Context) error {
	m := t.m
	e := m.e
	e.mu.Lock()
	defer e.mu.Unlock()
	if t.err != nil {
		return nil
	}
	m.endTerm(t, fmt.Errorf("memlease: member %q term %d: %w", m.id, t.token, lease.ErrResigned))
	if !m.cut && e.holder == t {
		e.release()
	}
	return nil
}
