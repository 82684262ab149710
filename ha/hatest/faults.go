package hatest

import (
	"fmt"
	"time"

	"github.com/hakit/hakit/ha/internal/core"
)

// Fault injection. Each fault has an undo; faults of the same kind on the
// same member may overlap, and the fault lasts until the last of them is
// undone. Undoing a fault records the time as the World's last heal,
// from which the liveness check counts. Calls for an unknown member ID
// panic: they are mistakes in the test.

func (w *World) mustMember(id string) *member {
	m := w.member(id)
	if m == nil {
		panic(fmt.Sprintf("hatest: no member %q", id))
	}
	return m
}

func (w *World) note(format string, args ...any) {
	s := w.clk.Now().Sub(w.start).String() + " " + fmt.Sprintf(format, args...)
	w.hist.Faults = append(w.hist.Faults, s)
	w.logf("fault: %s", s)
}

func (w *World) fault(format string, args ...any) {
	w.faults++
	w.note(format, args...)
}

func (w *World) heal(format string, args ...any) {
	w.healed = w.clk.Now()
	w.note(format, args...)
}

// Isolate cuts member id off from the election, both ways, until Heal: its
// renewals and campaigns no longer arrive, and it no longer learns who
// leads. Its links to the store and the sink are not affected (see Cut).
func (w *World) Isolate(id string) {
	m := w.mustMember(id)
	w.fault("isolate %s from the election", id)
	m.cuts++
	if m.cuts == 1 && !m.crashed {
		_ = w.election.Isolate(id)
	}
	w.settle()
}

// Heal undoes one Isolate of member id.
func (w *World) Heal(id string) {
	m := w.mustMember(id)
	w.heal("heal %s's link to the election", id)
	m.cuts--
	if m.cuts == 0 && !m.crashed {
		_ = w.election.Heal(id)
		// memlease releases at once the lease of a term that ended while
		// its member was cut off; a member whose slow clock had not yet
		// noticed learns it now, as from the answer to its first renewal.
		m.woke = w.clk.Now()
		for t, due := range m.ended {
			if due.After(w.clk.Now()) {
				m.ended[t] = w.clk.Now()
			}
		}
	}
	w.settle()
}

// Direction selects one or both directions of a link.
type Direction int

// The directions of a link between a member and a resource.
const (
	ToResource   Direction = 1 << iota // requests from the member are lost
	FromResource                       // answers to the member are lost (the request took effect)
	Both         = ToResource | FromResource
)

// String returns "->", "<-" or "<->".
func (d Direction) String() string {
	switch d {
	case ToResource:
		return "->"
	case FromResource:
		return "<-"
	case Both:
		return "<->"
	}
	return fmt.Sprintf("direction(%d)", int(d))
}

// Cut loses the messages in direction dir between member id and resource
// ("store" or "sink") until Restore. A cut of FromResource alone makes
// calls whose effect the member never learns of.
func (w *World) Cut(id, resource string, dir Direction) {
	w.mustMember(id)
	w.fault("cut %s %s %s", id, dir, resource)
	w.cut(id, resource, dir, 1)
	w.settle()
}

// Restore undoes one Cut with the same arguments.
func (w *World) Restore(id, resource string, dir Direction) {
	w.mustMember(id)
	w.heal("restore %s %s %s", id, dir, resource)
	w.cut(id, resource, dir, -1)
	w.settle()
}

func (w *World) cut(id, resource string, dir Direction, by int) {
	if dir&ToResource != 0 {
		w.net.cuts[link{id, resource, true}] += by
	}
	if dir&FromResource != 0 {
		w.net.cuts[link{id, resource, false}] += by
	}
}

// Pause freezes member id's process, as a long GC pause or SIGSTOP: it
// takes no steps (its timers and the answers it receives wait), the
// election treats it as paused, and messages it sent before keep
// travelling. Resume undoes it.
func (w *World) Pause(id string) {
	m := w.mustMember(id)
	w.fault("pause %s", id)
	m.pauses++
	if m.pauses == 1 {
		w.hist.Paused[id] = append(w.hist.Paused[id], Interval{Start: w.clk.Now()})
		if !m.crashed {
			_ = w.election.Pause(id)
			m.paused = true
		}
	}
	w.settle()
}

// Resume undoes one Pause of member id; when the last is undone the member
// carries out, in order, what it held back, then notices what changed.
func (w *World) Resume(id string) {
	m := w.mustMember(id)
	w.heal("resume %s", id)
	m.pauses--
	if m.pauses > 0 {
		return
	}
	w.endInterval(id)
	if m.crashed {
		return
	}
	_ = w.election.Resume(id)
	m.paused, m.woke = false, w.clk.Now()
	held := m.deferred
	m.deferred = nil
	for _, fn := range held {
		if m.paused || m.crashed {
			m.deferred = append(m.deferred, fn)
			continue
		}
		fn()
	}
	w.settle()
}

func (w *World) endInterval(id string) {
	ps := w.hist.Paused[id]
	for i := len(ps) - 1; i >= 0; i-- {
		if ps[i].End.IsZero() {
			ps[i].End = w.clk.Now()
			return
		}
	}
}

// Crash kills member id's process: its Machine, timers, campaign and work
// vanish, its elector is closed without resigning (the lease runs out at
// its expiry), and the calls it had sent keep travelling. Restart boots a
// new incarnation from durable state (the store and the sink); a crashed
// member counts as paused until then.
func (w *World) Crash(id string) {
	m := w.mustMember(id)
	if m.crashed {
		return
	}
	w.fault("crash %s", id)
	m.crashed = true
	m.inc++
	if m.pauses == 0 {
		w.hist.Paused[id] = append(w.hist.Paused[id], Interval{Start: w.clk.Now()})
	}
	_ = w.election.Isolate(id)
	if m.camp != nil {
		m.camp.cancel()
	}
	_ = m.el.Close()
	if m.camp != nil {
		<-m.camp.done
		m.camp = nil
	}
	for _, k := range m.runs {
		if !k.exited {
			k.exited = true
			if r := &w.hist.Runs[k.runIdx]; r.End.IsZero() {
				r.End = w.clk.Now()
			}
		}
	}
	m.role = core.RoleStopped
	w.settle()
}

// Restart boots a new incarnation of crashed member id. It does nothing
// for a member that is running.
func (w *World) Restart(id string) {
	m := w.mustMember(id)
	if !m.crashed {
		return
	}
	w.heal("restart %s", id)
	m.crashed, m.paused = false, false
	if m.pauses == 0 {
		w.endInterval(id)
	}
	m.boot()
	w.settle()
}

// Switchover asks member id to hand the active role over (to anyone), as
// an operator's switchover command sent to that member would; a standby
// forwards it to the leader it knows. It counts as a fault that heals at
// once: the liveness bound runs from it.
func (w *World) Switchover(id string) {
	m := w.mustMember(id)
	w.fault("switchover via %s", id)
	w.healed = w.clk.Now() // a handover interrupts the work like a fault that heals at once
	m.deliver(m.inc, func() { m.post(core.Command{ID: 1, Cmd: core.CmdSwitchover}) })
	w.settle()
}

// Sicken makes member id's health check fail until Cure: after Fall
// failed probes the member stops campaigning, and steps down if active.
func (w *World) Sicken(id string) {
	m := w.mustMember(id)
	w.fault("sicken %s", id)
	m.sick++
}

// Cure undoes one Sicken; after Rise passing probes the member may
// campaign again.
func (w *World) Cure(id string) {
	m := w.mustMember(id)
	w.heal("cure %s", id)
	m.sick--
}

// Maintain sends member id the operator's pause command (maintenance
// mode): it stops campaigning; an active member stays active, since a
// lost lease still ends its term. Release sends the resume command.
// Overlapping Maintains of one member need as many Releases.
func (w *World) Maintain(id string) {
	m := w.mustMember(id)
	w.fault("maintain %s", id)
	m.maint++
	if m.maint == 1 {
		m.deliver(m.inc, func() { m.post(core.Command{ID: 1, Cmd: core.CmdPause}) })
	}
	w.settle()
}

// Release undoes one Maintain.
func (w *World) Release(id string) {
	m := w.mustMember(id)
	w.heal("release %s from maintenance", id)
	m.maint--
	if m.maint == 0 {
		m.deliver(m.inc, func() { m.post(core.Command{ID: 1, Cmd: core.CmdResume}) })
	}
	w.settle()
}

// SetLoss makes every message on the network be dropped with probability
// p (0 stops the loss, and counts as a heal).
func (w *World) SetLoss(p float64) {
	if p == 0 {
		w.heal("stop message loss")
	} else {
		w.fault("lose %.0f%% of messages", p*100)
	}
	w.net.drop = p
}

// Slow multiplies the network's MaxDelay by fifty until Fast: messages
// overtake each other across much longer spans, and with the defaults
// some take longer than OpTimeout, so they land after their caller gave
// up on them, and possibly after a failover.
func (w *World) Slow() {
	w.fault("slow network")
	w.net.slow++
}

// Fast undoes one Slow.
func (w *World) Fast() {
	w.heal("fast network")
	w.net.slow--
}

// at runs fn at virtual time w.Start()+d.
func (w *World) at(d time.Duration, fn func()) {
	w.clk.AfterFunc(w.start.Add(d).Sub(w.clk.Now()), func() { fn(); w.settle() })
}
