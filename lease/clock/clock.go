// Package clock is the time source of hakit's electors, the Raft group and
// the Node: a small interface over the monotonic clock, with a real
// implementation and a Fake that a test or a simulation advances by hand.
//
// Everything in hakit that measures a lease or schedules a tick takes a
// Clock, so that ha/hatest can run whole clusters on virtual time.
package clock

import (
	"sync"
	"time"
)

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

// AfterFunc arranges for f to be called once after d on c, and returns a
// Timer whose Stop cancels the call (reporting whether it did) and whose
// Reset schedules it again. The Timer's C is nil.
//
// If c has its own AfterFunc method (Real and Fake do), that is used: the
// real clock calls f in its own goroutine, as time.AfterFunc; a Fake calls
// f inside Advance or Set, which makes a simulation deterministic. For any
// other Clock, a goroutine waits on a timer of c and then calls f.
func AfterFunc(c Clock, d time.Duration, f func()) Timer {
	if a, ok := c.(interface {
		AfterFunc(time.Duration, func()) Timer
	}); ok {
		return a.AfterFunc(d, f)
	}
	t := &funcTimer{c: c, f: f}
	t.Reset(d)
	return t
}

// funcTimer runs f after a timer of c fires. Each arming gets its own
// waiting goroutine and its own cancel channel; a goroutine whose cancel
// channel is no longer current exits without calling f.
type funcTimer struct {
	c Clock
	f func()

	mu      sync.Mutex
	cancel  chan struct{} // of the current arming; nil if none is pending
	current Timer
}

func (t *funcTimer) C() <-chan time.Time { return nil }

func (t *funcTimer) Stop() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.stopLocked()
}

func (t *funcTimer) stopLocked() bool {
	if t.cancel == nil {
		return false
	}
	close(t.cancel)
	t.cancel = nil
	t.current.Stop()
	return true
}

func (t *funcTimer) Reset(d time.Duration) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	was := t.stopLocked()
	cancel, timer := make(chan struct{}), t.c.NewTimer(d)
	t.cancel, t.current = cancel, timer
	go func() {
		select {
		case <-timer.C():
		case <-cancel:
			return
		}
		t.mu.Lock()
		if t.cancel != cancel { // stopped or reset meanwhile
			t.mu.Unlock()
			return
		}
		t.cancel = nil
		t.mu.Unlock()
		t.f()
	}()
	return was
}

// Real returns the Clock backed by package time.
func Real() Clock { return realClock{} }

type realClock struct{}

// AfterFunc calls f in its own goroutine after d, as time.AfterFunc.
func (realClock) AfterFunc(d time.Duration, f func()) Timer { return realTimer{time.AfterFunc(d, f)} }

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
