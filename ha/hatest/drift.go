package hatest

import (
	"time"

	"github.com/hakit/hakit/lease/clock"
)

// driftClock is one member's view of the world's Fake: its time runs at
// rate (within 1±MaxDrift) from the world's start, so the durations the
// member measures on it are off by at most MaxDrift of their length.
// Timers armed on it are armed on the Fake with the duration converted to
// world time, so they still fire inside Fake.Advance and the run stays
// deterministic.
type driftClock struct {
	f     *clock.Fake
	start time.Time
	rate  float64 // member seconds per world second
}

var _ clock.Clock = (*driftClock)(nil)

// Now returns the member's local time.
func (c *driftClock) Now() time.Time {
	el := c.f.Now().Sub(c.start)
	return c.start.Add(time.Duration(float64(el) * c.rate))
}

// world converts a local duration into world time, rounding up so that a
// timer never fires before its local deadline.
func (c *driftClock) world(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	w := time.Duration(float64(d) / c.rate)
	if time.Duration(float64(w)*c.rate) < d {
		w++
	}
	return w
}

func (c *driftClock) NewTimer(d time.Duration) clock.Timer { return c.f.NewTimer(c.world(d)) }

func (c *driftClock) NewTicker(d time.Duration) clock.Ticker { return c.f.NewTicker(c.world(d)) }

// AfterFunc runs fn on the Fake after the local duration d.
func (c *driftClock) AfterFunc(d time.Duration, fn func()) clock.Timer {
	return c.f.AfterFunc(c.world(d), fn)
}
