package hatest

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"time"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/ha/internal/core"
	"github.com/hakit/hakit/lease"
	"github.com/hakit/hakit/lease/clock"
	"github.com/hakit/hakit/lease/memlease"
)

// member is the simulated edge of one ha.Node: it owns a core.Machine and
// carries out its actions on the world's election, network and resources,
// as node.go does with goroutines, but on the world's Fake and in one
// goroutine. Everything a member does runs through deliver, which holds
// back what arrives while the member's process is frozen and discards
// what belongs to an incarnation that crashed.
type member struct {
	w   *World
	id  string
	clk *driftClock

	inc     int // incarnation, bumped at every crash
	crashed bool
	paused  bool
	pauses  int // depth of overlapping pauses
	cuts    int // depth of overlapping isolations from the election
	sick    int // depth of overlapping Sicken faults
	maint   int // depth of overlapping Maintain faults

	el       *memlease.Elector
	m        *core.Machine
	queue    []core.Input
	deferred []func()

	camp      *campaign
	terms     map[fence.Token]lease.Term
	ended     map[fence.Token]time.Time // when the member notices a closed Done
	woke      time.Time                 // when the member last woke from a pause or was healed
	grantSeen int
	leader    lease.Leader
	role      core.Role

	timers     [core.NumTimers]clock.Timer
	promote    clock.Timer
	promoteTok fence.Token
	runs       map[int]*work
}

type campaign struct {
	cancel context.CancelFunc
	done   chan struct{}
	term   lease.Term
	err    error
}

// boot starts a new incarnation: a fresh Elector and Machine.
func (m *member) boot() {
	w := m.w
	el, err := w.election.Member(m.id, m.id+".sim")
	if err != nil {
		panic(fmt.Sprintf("hatest: member %s: %v", m.id, err))
	}
	m.el = el
	if m.cuts > 0 {
		_ = w.election.Isolate(m.id)
	}
	if m.pauses > 0 {
		_ = w.election.Pause(m.id)
		m.paused = true
	}
	m.queue, m.deferred, m.camp = nil, nil, nil
	m.terms, m.ended, m.runs = map[fence.Token]lease.Term{}, map[fence.Token]time.Time{}, map[int]*work{}
	m.leader, m.role = lease.Leader{}, core.RoleStandby
	m.timers, m.promote = [core.NumTimers]clock.Timer{}, nil
	m.m = core.New(w.policy(m.id), m.clk.Now())
	inc := m.inc
	m.deliver(inc, func() {
		m.exec(m.m.Start(m.clk.Now()))
		if m.maint > 0 {
			// The operator's maintenance mode is not persisted by the
			// Node; the operator puts the restarted member back in it.
			m.post(core.Command{ID: 1, Cmd: core.CmdPause})
		}
		m.probe()
	})
}

// errSick is the failure of a sickened member's health check.
var errSick = errors.New("hatest: member sickened")

// probe runs the member's health check now and every CheckInterval: it
// fails while the member is sickened.
func (m *member) probe() {
	var err error
	if m.sick > 0 {
		err = errSick
	}
	m.post(core.CheckResult{Index: 0, Err: err})
	m.after(m.w.opts.CheckInterval, m.probe)
}

// after runs fn after the member-local duration d, through deliver.
func (m *member) after(d time.Duration, fn func()) clock.Timer {
	inc := m.inc
	return m.clk.AfterFunc(d, func() { m.deliver(inc, fn) })
}

// deliver runs fn as a step of incarnation inc: dropped if that
// incarnation crashed, held back while the member is paused.
func (m *member) deliver(inc int, fn func()) {
	if inc != m.inc || m.crashed {
		return
	}
	if m.paused {
		m.deferred = append(m.deferred, fn)
		return
	}
	fn()
	m.w.settle()
}

func (m *member) post(ev core.Input) { m.queue = append(m.queue, ev) }

// poll turns what changed outside the member (a campaign decided, a term
// ended, a new leader) into events and feeds every queued event to the
// Machine. It reports whether it did anything.
func (m *member) poll() bool {
	if m.crashed || m.paused || m.m == nil {
		return false
	}
	w := m.w
	did := false
	granted := false
	w.mu.Lock()
	for ; m.grantSeen < len(w.grants); m.grantSeen++ {
		if w.grants[m.grantSeen].Leader.ID == m.id {
			granted = true
		}
	}
	w.mu.Unlock()
	if c := m.camp; c != nil {
		if granted {
			<-c.done // granted: the Campaign call is returning
		}
		select {
		case <-c.done:
			m.camp = nil
			did = true
			if c.err != nil {
				m.post(core.CampaignFailed{Err: fmt.Errorf("hatest: campaign of member %s: %w", m.id, c.err)})
			} else {
				m.won(c.term)
			}
		default:
		}
	}
	for _, t := range slices.Sorted(mapKeys(m.terms)) {
		term := m.terms[t]
		select {
		case <-term.Done():
		default:
			continue
		}
		due, ok := m.ended[t]
		if !ok {
			due = w.clk.Now().Add(m.doneDelay(term))
			m.ended[t] = due
			if d := due.Sub(w.clk.Now()); d > 0 {
				w.clk.AfterFunc(d, w.settle)
			}
		}
		if w.clk.Now().Before(due) {
			continue
		}
		delete(m.terms, t)
		m.post(core.TermEnded{Token: t, Err: term.Err()})
		did = true
	}
	if m.cuts == 0 {
		if h := w.election.Holder(); h != m.leader {
			m.leader = h
			m.post(core.LeaderChanged{Leader: h})
			did = true
		}
	}
	for len(m.queue) > 0 && !m.crashed && !m.paused {
		ev := m.queue[0]
		m.queue = m.queue[1:]
		m.exec(m.m.Step(m.clk.Now(), ev))
		did = true
	}
	return did
}

func mapKeys[K comparable, V any](mp map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range mp {
			if !yield(k) {
				return
			}
		}
	}
}

// doneDelay is how much later, in world time, the member notices that
// its term ended than the election closed Done. memlease self-fences on
// the world's clock; a member whose own clock runs slow (rate < 1) would
// measure its self-fencing deadline, TTL - DriftMargin after its last
// renewal, (TTL - DriftMargin) x (1/rate - 1) later. A member that has
// just woken from a pause compares its deadline with its clock at once;
// one that has just been healed learns it from the election at once.
// The planted bug lateDone adds its own delay.
func (m *member) doneDelay(t lease.Term) time.Duration {
	w := m.w
	d := w.opts.lateDone
	if m.clk.rate < 1 && errors.Is(t.Err(), lease.ErrLost) && !m.woke.Equal(w.clk.Now()) {
		lo := w.election.Options()
		d += time.Duration(float64(lo.TTL-lo.DriftMargin) * (1/m.clk.rate - 1))
	}
	return d
}

func (m *member) won(t lease.Term) {
	m.terms[t.Token()] = t
	m.post(core.Won{Token: t.Token()})
}

// startCampaign calls Campaign in a goroutine (memlease's Campaign blocks)
// and waits until the election has queued or decided it, so that nothing
// else in the world moves while the goroutine runs.
func (m *member) startCampaign() {
	ctx, cancel := context.WithCancel(context.Background())
	c := &campaign{cancel: cancel, done: make(chan struct{})}
	m.camp = c
	el := m.el
	go func() {
		c.term, c.err = el.Campaign(ctx)
		close(c.done)
	}()
	w := m.w
	for {
		select {
		case <-c.done:
			return
		default:
		}
		if slices.Contains(w.election.Waiting(), m.id) {
			return
		}
		w.mu.Lock()
		n := len(w.grants)
		granted := n > m.grantSeen && slices.ContainsFunc(w.grants[m.grantSeen:], func(g Grant) bool { return g.Leader.ID == m.id })
		w.mu.Unlock()
		if granted {
			return
		}
		runtime.Gosched()
	}
}

func (m *member) cancelCampaign() {
	c := m.camp
	if c == nil {
		return
	}
	m.camp = nil
	c.cancel()
	<-c.done
	if c.err == nil {
		m.won(c.term) // won before the cancellation: the Machine gives it back
	}
}

func (m *member) resign(t fence.Token) error {
	term, ok := m.terms[t]
	if !ok {
		return nil
	}
	return term.Resign(context.Background())
}

// exec carries out the Machine's actions in order.
func (m *member) exec(acts []core.Action) {
	w := m.w
	for _, a := range acts {
		switch a := a.(type) {
		case core.Campaign:
			m.startCampaign()
		case core.CancelCampaign:
			m.cancelCampaign()
		case core.ResignStray:
			_ = m.resign(a.Token)
		case core.Promote:
			tok := a.Token
			m.promoteTok = tok
			m.promote = m.after(w.opts.SwitchDelay, func() {
				m.promote = nil
				m.post(core.Promoted{Token: tok})
			})
		case core.CancelPromote:
			if m.promote != nil {
				m.promote.Stop()
				m.promote = nil
				m.post(core.Promoted{Token: m.promoteTok, Err: context.Canceled})
			}
		case core.StartWork:
			k := &work{m: m, token: a.Token, run: a.Run}
			m.runs[a.Run] = k
			k.start()
		case core.StopWork:
			k := m.runs[a.Run]
			if k == nil || k.exited {
				continue
			}
			k.stop()
			if !k.exited {
				m.after(w.opts.StopTimeout, func() {
					k.exit(fmt.Errorf("hatest: work of member %s under token %d overran its stop timeout", m.id, k.token))
				})
			}
		case core.DemoteSwitch:
			tok := a.Token
			m.after(w.opts.SwitchDelay, func() { m.post(core.SwitchDemoted{Token: tok}) })
		case core.Release:
			err := m.resign(a.Token)
			m.post(core.Released{Token: a.Token, Err: err})
		case core.SetTimer:
			if t := m.timers[a.Kind]; t != nil {
				t.Stop()
			}
			kind := a.Kind
			m.timers[kind] = m.after(a.D, func() { m.post(core.TimerFired{Kind: kind}) })
		case core.CancelTimer:
			if t := m.timers[a.Kind]; t != nil {
				t.Stop()
				m.timers[a.Kind] = nil
			}
		case core.Forward:
			w.forward(a.Leader.ID, a.To)
		case core.Emit:
			if a.Event.Kind == core.EventRole {
				m.role = a.Event.Role
				w.logf("%s %s: %s (token %d): %s", w.clk.Now().Format("15:04:05.000"), m.id, a.Event.Role, a.Event.Token, a.Event.Reason)
			}
		case core.Reply, core.Exit:
		default:
			// The World's policy never asks for it (shared maintenance
			// is off); a new kind of action must be modelled here.
			panic(fmt.Sprintf("hatest: member %s: action %T is not modelled", m.id, a))
		}
	}
}
