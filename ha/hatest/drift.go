package hatest

import (
	"time"

	"github.com/hakit/hakit/lease/clock"
)

// Drift returns a Clock that runs rate times as fast as c, counting from
// the moment of the call: durations measured on it, and the timers armed
// on it, are off by the factor rate from c's. A World gives each member
// such a clock; a test of real components gives one to each member's
// elector and Node to check that the drift margins hold (rate within
// 1±margin) or that the checkers notice when they do not.
//
// Timers and AfterFunc calls are armed on c, with the duration converted,
// so on a clock.Fake they still fire inside Advance. rate must be
// positive.
func Drift(c clock.Clock, rate float64) clock.Clock {
	return newDrift(c, rate)
}

func newDrift(c clock.Clock, rate float64) *driftClock {
	if rate <= 0 {
		panic("hatest: Drift rate must be positive")
	}
	return &driftClock{c: c, start: c.Now(), rate: rate}
}

// driftClock is the Clock of Drift.
type driftClock struct {
	c     clock.Clock
	start time.Time
	rate  float64 // local seconds per second of c
}

var _ clock.Clock = (*driftClock)(nil)

// Now returns the local time.
func (d *driftClock) Now() time.Time {
	el := d.c.Now().Sub(d.start)
	return d.start.Add(time.Duration(float64(el) * d.rate))
}

// world converts a local duration into one of c, rounding up so that a
// timer never fires before its local deadline.
func (d *driftClock) world(l time.Duration) time.Duration {
	if l <= 0 {
		return l
	}
	w := time.Duration(float64(l) / d.rate)
	if time.Duration(float64(w)*d.rate) < l {
		w++
	}
	return w
}

func (d *driftClock) NewTimer(l time.Duration) clock.Timer {
	return driftTimer{d.c.NewTimer(d.world(l)), d}
}

func (d *driftClock) NewTicker(l time.Duration) clock.Ticker { return d.c.NewTicker(d.world(l)) }

// AfterFunc runs fn after the local duration l, as clock.AfterFunc on c.
func (d *driftClock) AfterFunc(l time.Duration, fn func()) clock.Timer {
	return driftTimer{clock.AfterFunc(d.c, d.world(l), fn), d}
}

// driftTimer converts the duration of Reset.
type driftTimer struct {
	clock.Timer
	d *driftClock
}

func (t driftTimer) Reset(l time.Duration) bool { return t.Timer.Reset(t.d.world(l)) }
