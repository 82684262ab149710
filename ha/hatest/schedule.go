package hatest

import (
	"fmt"
	"strings"
	"time"

	"pgregory.net/rapid"
)

// FaultKind names a kind of fault in a Schedule.
type FaultKind int

// The kinds of fault a Schedule can hold.
const (
	FaultIsolate     FaultKind = iota // Isolate the member from the election
	FaultCut                          // Cut the member's link to Resource in Dir
	FaultPause                        // Pause the member
	FaultCrash                        // Crash the member; For later, Restart it
	FaultLoss                         // lose 30% of all messages
	FaultSlow                         // Slow the network
	FaultSwitchover                   // a switchover command to the member (For is ignored)
	FaultUnhealthy                    // the member's health check fails
	FaultMaintenance                  // an operator puts the member in maintenance mode
	numFaultKinds
)

var faultNames = [...]string{"isolate", "cut", "pause", "crash", "loss", "slow", "switchover", "unhealthy", "maintenance"}

// String returns the kind's name.
func (k FaultKind) String() string {
	if k >= 0 && int(k) < len(faultNames) {
		return faultNames[k]
	}
	return fmt.Sprintf("fault(%d)", int(k))
}

// Fault is one entry of a Schedule: at At after the start, inject Kind on
// member Member (an index into World.Members), and undo it For later.
type Fault struct {
	At, For  time.Duration
	Kind     FaultKind
	Member   int
	Resource string    // for FaultCut: "store" or "sink"
	Dir      Direction // for FaultCut
}

// String formats the fault as "at+for kind member [dir resource]".
func (f Fault) String() string {
	s := fmt.Sprintf("%v+%v %s m%d", f.At, f.For, f.Kind, f.Member)
	if f.Kind == FaultCut {
		s += fmt.Sprintf(" %s %s", f.Dir, f.Resource)
	}
	return s
}

// Schedule is a list of faults to inject into a World.
type Schedule []Fault

// String lists the faults, in order, in the form rapid prints on failure.
func (s Schedule) String() string {
	parts := make([]string, len(s))
	for i, f := range s {
		parts[i] = f.String()
	}
	return "[" + strings.Join(parts, "; ") + "]"
}

// End returns when the last fault of s is undone.
func (s Schedule) End() time.Duration {
	var end time.Duration
	for _, f := range s {
		end = max(end, f.At+f.For)
	}
	return end
}

// Apply arms every fault of s, and its undo, on w's clock, relative to
// w.Start(); they happen as Run passes their times. Apply must be called
// before Run passes the first of them.
func (w *World) Apply(s Schedule) {
	for _, f := range s {
		id := w.members[f.Member%len(w.members)].id
		do, undo := func() {}, func() {}
		switch f.Kind {
		case FaultIsolate:
			do, undo = func() { w.Isolate(id) }, func() { w.Heal(id) }
		case FaultCut:
			do, undo = func() { w.Cut(id, f.Resource, f.Dir) }, func() { w.Restore(id, f.Resource, f.Dir) }
		case FaultPause:
			do, undo = func() { w.Pause(id) }, func() { w.Resume(id) }
		case FaultCrash:
			do, undo = func() { w.Crash(id) }, func() { w.Restart(id) }
		case FaultLoss:
			do, undo = func() { w.net.losses++; w.SetLoss(0.3) }, func() {
				w.net.losses--
				if w.net.losses == 0 {
					w.SetLoss(0)
				} else {
					w.heal("end one message loss")
				}
			}
		case FaultSlow:
			do, undo = w.Slow, w.Fast
		case FaultSwitchover:
			do = func() { w.Switchover(id) }
		case FaultUnhealthy:
			do, undo = func() { w.Sicken(id) }, func() { w.Cure(id) }
		case FaultMaintenance:
			do, undo = func() { w.Maintain(id) }, func() { w.Release(id) }
		}
		w.at(f.At, do)
		if f.Kind != FaultSwitchover {
			w.at(f.At+f.For, undo)
		}
	}
}

// ScheduleOf returns a rapid generator of schedules of up to maxFaults
// faults on a World of members members, all injected within the first
// span and each lasting at most maxFor. rapid shrinks a failing schedule
// towards fewer, shorter and earlier faults.
func ScheduleOf(members, maxFaults int, span, maxFor time.Duration) *rapid.Generator[Schedule] {
	return rapid.Custom(func(t *rapid.T) Schedule {
		n := rapid.IntRange(0, maxFaults).Draw(t, "faults")
		s := make(Schedule, n)
		for i := range s {
			f := Fault{
				Kind:   FaultKind(rapid.IntRange(0, int(numFaultKinds)-1).Draw(t, "kind")),
				Member: rapid.IntRange(0, members-1).Draw(t, "member"),
				At:     time.Duration(rapid.Int64Range(0, int64(span/time.Millisecond)).Draw(t, "at")) * time.Millisecond,
				For:    time.Duration(rapid.Int64Range(1, int64(maxFor/time.Millisecond)).Draw(t, "for")) * time.Millisecond,
			}
			if f.Kind == FaultCut {
				f.Resource = rapid.SampledFrom([]string{"store", "sink"}).Draw(t, "resource")
				f.Dir = rapid.SampledFrom([]Direction{ToResource, FromResource, Both}).Draw(t, "dir")
			}
			if f.Kind == FaultSwitchover {
				f.For = 0
			}
			s[i] = f
		}
		return s
	})
}
