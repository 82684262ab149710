// Package clock is the time source of hakit's electors, the Raft group and
// the Node: a small interface over the monotonic clock, with a real
// implementation and a Fake that a test or a simulation advances by hand.
//
// Everything in hakit that measures a lease or schedules a tick takes a
// Clock, so that ha/hatest can run whole clusters on virtual time.
package clock

import "time"

// Clock tells the time and makes timers. Durations measured between two
// Now values use the monotonic clock where the implementation has one.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// NewTimer returns a Timer that fires once after d.
	NewTimer(d time.Duration) Timer
	// NewTicker returns a Ticker that fires every d; d must be positive.
	NewTicker(d time.Duration) Ticker
}

// Timer is a single event, as time.Timer.
type Timer interface {
	// C delivers the time at which the timer fired.
	C() <-chan time.Time
	// Stop prevents the timer from firing and reports whether it was
	// still pending.
	Stop() bool
	// Reset makes the timer fire after d and reports whether it was still
	// pending. Like time.Timer (Go 1.23 and later), a value not yet
	// received from C is discarded.
	Reset(d time.Duration) bool
}

// Ticker delivers ticks at an interval, as time.Ticker; ticks a slow
// receiver misses are dropped.
type Ticker interface {
	C() <-chan time.Time
	Stop()
}

// Real returns the Clock backed by package time.
func Real() Clock { return realClock{} }

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

func (realClock) NewTicker(d time.Duration) Ticker { return realTicker{time.NewTicker(d)} }

type realTimer struct{ t *time.Timer }

func (r realTimer) C() <-chan time.Time        { return r.t.C }
func (r realTimer) Stop() bool                 { return r.t.Stop() }
func (r realTimer) Reset(d time.Duration) bool { return r.t.Reset(d) }

type realTicker struct{ t *time.Ticker }

func (r realTicker) C() <-chan time.Time { return r.t.C }
func (r realTicker) Stop()               { r.t.Stop() }
