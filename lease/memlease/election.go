// Package memlease is an in-process lease.Elector for tests and
// simulations. All members of an Election live in one process and share
// one Clock; with a clock.Fake the whole election runs on virtual time and
// is deterministic.
//
// # The model
//
// The Election plays the part of the coordination service (etcd, a Raft
// group). It grants the lease to the oldest waiting campaign of a member it
// can reach, with a token from a counter, and lets the lease expire TTL
// after the holder's last renewal that reached it. Each member renews every
// RenewInterval and keeps its own self-fencing deadline, last renewal +
// TTL - DriftMargin: when the deadline passes without a renewal reaching the
// election, the member ends its term (Done closes, Err wraps lease.ErrLost)
// before the election can grant the lease to anyone else.
//
// Fault hooks change how a member relates to the election:
//
//   - Isolate cuts a member off: its renewals, campaigns and resignations
//     no longer reach the election, its Leader calls fail with ErrCutOff
//     and its observers stop receiving (changes queue up). A holder that is
//     cut off ends its term at its self-fencing deadline; the election
//     grants the lease to another member only at the expiry, DriftMargin
//     later.
//   - Pause freezes a member, as a long GC pause or SIGSTOP would: its
//     timers take no steps (no renewals, no self-fencing) and it cannot be
//     granted the lease. A holder paused past its expiry loses the lease
//     while its Done is still open; when Resume runs it notices that its
//     deadline has passed and ends the term. That window is what fencing
//     tokens exist for.
//   - Heal and Resume undo them.
//
// Pause models a frozen process only as far as the elector is concerned:
// calls made on the member's Elector while it is paused are still served. A
// simulation that pauses a whole node also stops that node's own goroutines.
//
// # Time
//
// Every timer of an Election is scheduled with clock.AfterFunc. On a
// clock.Fake that means every renewal, self-fencing step and expiry runs
// inside Fake.Advance or Fake.Set, in deadline order: when Advance returns,
// the election has reacted to all the time it passed, and Holder reports
// the result. Campaign, Observe and Term.Done are then ordinary channel
// waits in the caller's goroutines.
//
// Clock drift is not modelled: members and the election read one clock, so
// the DriftMargin is a pure safety gap between a holder's self-fence and the
// lease's expiry.
package memlease

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/lease"
	"github.com/hakit/hakit/lease/clock"
)

// DefaultTTL is the lease TTL when Options.TTL is zero.
const DefaultTTL = 5 * time.Second

var (
	// ErrCutOff is what an isolated member's Leader returns.
	ErrCutOff = errors.New("memlease: member cut off from the election")
	// ErrUnknownMember is returned by the fault hooks for an ID that is not
	// a live member of the election.
	ErrUnknownMember = errors.New("memlease: unknown member")
	// ErrDuplicateMember is returned by Member for an ID that is already a
	// live member of the election.
	ErrDuplicateMember = errors.New("memlease: member already in the election")
	// ErrHolding is returned by Campaign while the member already holds a
	// term.
	ErrHolding = errors.New("memlease: already holding a term")
	// ErrCampaigning is returned by Campaign while another Campaign of the
	// same member is in progress.
	ErrCampaigning = errors.New("memlease: already campaigning")
	// ErrConfig is wrapped by the error NewElection returns for bad
	// Options; the message names each broken field and its rule
	// ("memlease: invalid config: TTL: must be positive").
	ErrConfig = errors.New("memlease: invalid config")
	// ErrInvalidOptions is the old name of ErrConfig.
	//
	// Deprecated: use ErrConfig.
	ErrInvalidOptions = ErrConfig
)

// Options configures an Election. The zero Options gives the defaults.
type Options struct {
	// TTL is how long the election keeps the lease after the holder's last
	// renewal that reached it. Default DefaultTTL.
	TTL time.Duration
	// DriftMargin is how much earlier than the lease's expiry a holder's
	// own self-fencing deadline falls. It must be at least zero and less
	// than TTL/2. Default TTL/10.
	DriftMargin time.Duration
	// RenewInterval is how often a holder renews. It must be positive and
	// less than TTL - DriftMargin, so that a reachable holder always renews
	// before its self-fencing deadline. Default TTL/3.
	RenewInterval time.Duration
	// OnChange, if set, is called with the new holder each time the lease
	// is granted or released (the zero Leader for "no holder"), in order,
	// synchronously and with the Election's lock held: it must not call
	// the Election or its members. A simulation uses it to check
	// invariants at the instant of each change.
	OnChange func(lease.Leader)
}

// withDefaults returns o with every zero field set to its default.
func (o Options) withDefaults() Options {
	if o.TTL == 0 {
		o.TTL = DefaultTTL
	}
	if o.DriftMargin == 0 && o.TTL > 0 {
		o.DriftMargin = o.TTL / 10
	}
	if o.RenewInterval == 0 && o.TTL > 0 {
		o.RenewInterval = o.TTL / 3
	}
	return o
}

// validate reports every rule o breaks, joined; it changes nothing.
func (o Options) validate() error {
	var errs []error
	bad := func(field, rule string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(rule, args...)))
	}
	if o.TTL <= 0 {
		bad("TTL", "must be positive, got %v", o.TTL)
	}
	if o.DriftMargin < 0 || o.DriftMargin >= o.TTL/2 {
		bad("DriftMargin", "must be at least zero and less than half of TTL %v, got %v", o.TTL, o.DriftMargin)
	}
	if o.RenewInterval <= 0 || o.RenewInterval >= o.TTL-o.DriftMargin {
		bad("RenewInterval", "must be positive and less than TTL %v - DriftMargin %v, got %v", o.TTL, o.DriftMargin, o.RenewInterval)
	}
	return errors.Join(errs...)
}

// Election is one lease that any number of members campaign for. It is
// safe for concurrent use.
type Election struct {
	clk  clock.Clock
	opts Options

	mu      sync.Mutex
	members map[string]*Elector // live members by ID
	queue   []*request          // waiting campaigns, oldest first
	holder  *term               // the term the election has granted, or nil
	expires time.Time           // when holder's lease expires
	expiry  clock.Timer         // fires at expires; nil until first needed
	last    fence.Token         // the newest token issued
	leader  lease.Leader        // holder as a Leader; zero if none
	changed chan struct{}       // closed and replaced on every change observers care about
}

// NewElection returns an empty election on clk. It fails, wrapping
// ErrConfig and naming every broken field, if opts are inconsistent.
func NewElection(clk clock.Clock, opts Options) (*Election, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	return &Election{clk: clk, opts: opts, members: map[string]*Elector{}, changed: make(chan struct{})}, nil
}

// Options returns the options in effect, defaults filled in.
func (e *Election) Options() Options { return e.opts }

// Member adds a member with the given ID and advertised address and returns
// its Elector. The ID of a closed member may be used again (a restarted
// process); the ID of a live one may not (ErrDuplicateMember).
func (e *Election) Member(id, addr string) (*Elector, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.members[id]; ok {
		return nil, fmt.Errorf("%w: %q", ErrDuplicateMember, id)
	}
	m := &Elector{e: e, id: id, addr: addr, closedc: make(chan struct{}), observers: map[*observer]struct{}{}}
	e.members[id] = m
	return m, nil
}

// Holder returns the holder as the election sees it: the member it has
// granted the lease to and not yet seen released or expired, or the zero
// Leader. A holder that is cut off or paused may already have ended its own
// term (or, if paused, may not yet know that it has lost it).
func (e *Election) Holder() lease.Leader {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.leader
}

// Waiting returns the IDs of the members whose campaigns wait in the
// queue, oldest first. The lease goes to the first of them that is neither
// cut off nor paused once it is free.
func (e *Election) Waiting() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	ids := make([]string, len(e.queue))
	for i, r := range e.queue {
		ids[i] = r.m.id
	}
	return ids
}

// Isolate cuts member id off from the election until Heal. See the package
// doc for what that does.
func (e *Election) Isolate(id string) error {
	return e.hook(id, func(m *Elector) { m.cut = true })
}

// Heal reconnects a member cut off by Isolate. A holder whose term is
// still running renews at once, as a client does when its link comes back;
// a term the member ended while cut off (resigned, or fenced itself) is
// released in the election at once.
// Changes its observers missed are delivered, in order; its waiting
// campaign can be granted again.
func (e *Election) Heal(id string) error {
	return e.hook(id, func(m *Elector) {
		m.cut = false
		if h := e.holder; h != nil && h.m == m && m.term != h {
			// The member ended this term while cut off (it resigned
			// or fenced itself); now it can tell the election.
			e.release()
		}
		if t := m.term; t != nil && !m.paused {
			if e.clk.Now().Before(t.deadline) {
				m.renewLocked(t)
			} else {
				m.lose(t, "self-fencing deadline passed")
			}
		}
	})
}

// Pause freezes member id until Resume. See the package doc.
func (e *Election) Pause(id string) error {
	return e.hook(id, func(m *Elector) { m.paused = true })
}

// Resume unfreezes a member paused by Pause. It first does what the
// member's timers would have done: a holder whose self-fencing deadline has
// passed ends its term (Err wraps lease.ErrLost), and one whose deadline has
// not passed renews at once.
func (e *Election) Resume(id string) error {
	return e.hook(id, func(m *Elector) {
		m.paused = false
		if t := m.term; t != nil {
			if !e.clk.Now().Before(t.deadline) {
				m.lose(t, "self-fencing deadline passed while paused")
			} else {
				m.renewLocked(t)
			}
		}
	})
}

// hook applies f to the live member id and lets the election react.
func (e *Election) hook(id string, f func(*Elector)) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	m, ok := e.members[id]
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknownMember, id)
	}
	f(m)
	e.grant()
	e.notify()
	return nil
}

// grant gives a free lease to the oldest waiting campaign of a member that
// is neither cut off nor paused. e.mu must be held.
func (e *Election) grant() {
	if e.holder != nil {
		return
	}
	for i, r := range e.queue {
		m := r.m
		if m.cut || m.paused {
			continue
		}
		e.queue = append(e.queue[:i:i], e.queue[i+1:]...)
		e.last++
		now := e.clk.Now()
		t := &term{m: m, token: e.last, done: make(chan struct{}), deadline: now.Add(e.opts.TTL - e.opts.DriftMargin)}
		e.holder, e.expires = t, now.Add(e.opts.TTL)
		e.expiry = resetTimer(e.clk, e.expiry, e.opts.TTL, e.onExpiry)
		m.req, m.term = nil, t
		m.renew = resetTimer(e.clk, m.renew, e.opts.RenewInterval, m.onRenew)
		m.fence = resetTimer(e.clk, m.fence, e.opts.TTL-e.opts.DriftMargin, m.onFence)
		e.setLeader(lease.Leader{ID: m.id, Token: t.token, Addr: m.addr})
		r.granted <- t
		return
	}
}

// release drops the holder and grants the lease to the next campaign.
// e.mu must be held.
func (e *Election) release() {
	e.holder = nil
	if e.expiry != nil {
		e.expiry.Stop()
	}
	e.setLeader(lease.Leader{})
	e.grant()
}

// onExpiry runs when the holder's lease may have expired.
func (e *Election) onExpiry() {
	e.mu.Lock()
	defer e.mu.Unlock()
	t := e.holder
	if t == nil || e.clk.Now().Before(e.expires) {
		return
	}
	if m := t.m; m.term == t && !m.paused {
		// A running member's self-fencing deadline lies DriftMargin
		// before the expiry, so its own timer has ended the term already
		// on a Fake. With the real clock its callback may still be
		// queued: end the term here so Done is closed before the lease is
		// granted again, as it would be with deadlines taken exactly.
		m.lose(t, "self-fencing deadline passed")
	}
	if e.holder == t {
		e.release()
	}
	e.notify()
}

// setLeader records a change of holder for Holder, observers and OnChange.
// e.mu must be held.
func (e *Election) setLeader(l lease.Leader) {
	e.leader = l
	for _, m := range e.members {
		for o := range m.observers {
			o.queue = append(o.queue, l)
		}
	}
	if e.opts.OnChange != nil {
		e.opts.OnChange(l)
	}
	e.notify()
}

// notify wakes every goroutine waiting for a change. e.mu must be held.
func (e *Election) notify() {
	close(e.changed)
	e.changed = make(chan struct{})
}

// resetTimer arms t (created on first use) to run f after d.
func resetTimer(clk clock.Clock, t clock.Timer, d time.Duration, f func()) clock.Timer {
	if t == nil {
		return clock.AfterFunc(clk, d, f)
	}
	t.Reset(d)
	return t
}
