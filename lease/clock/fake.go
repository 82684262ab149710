package clock

import (
	"container/heap"
	"context"
	"sync"
	"time"
)

// Fake is a Clock whose time moves only when Advance or Set is called.
// Timers and tickers fire, in deadline order (ties in the order they were
// armed), during the call that moves time past their deadline; while a
// timer fires, Now reports its deadline. A Fake is safe for concurrent use.
//
// Channel timers behave like time.Timer in Go 1.23 and later: the channel
// holds at most one value, Stop and Reset discard a value not yet received
// and report true for it, and a timer made or reset with a duration <= 0
// fires at once. A ticker whose value has not been received drops further
// ticks, as time.Ticker does.
//
// Functions scheduled with AfterFunc run in the goroutine that called
// Advance or Set, one at a time and in deadline order, so a simulation that
// drives all its timers through AfterFunc is deterministic: when Advance
// returns, every reaction to the time it passed has run. Such a function
// may use the Fake (Now, timers, Stop, Reset) but must not call Advance or
// Set, which would deadlock.
//
// Tests wait for the code under test to arm its timers with WaitForTimers
// instead of sleeping.
type Fake struct {
	advance sync.Mutex // serialises Advance and Set, so firing order is total

	mu      sync.Mutex // guards the fields below
	now     time.Time
	seq     uint64
	pending timerHeap     // armed timers, earliest first
	changed chan struct{} // closed and replaced whenever pending changes
}

// NewFake returns a Fake set to start.
func NewFake(start time.Time) *Fake {
	return &Fake{now: start, changed: make(chan struct{})}
}

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// NewTimer returns a timer that fires when the fake time reaches Now()+d,
// or at once if d <= 0.
func (f *Fake) NewTimer(d time.Duration) Timer {
	t := &fakeTimer{f: f, c: make(chan time.Time, 1), index: -1}
	f.mu.Lock()
	f.arm(t, d)
	f.mu.Unlock()
	return t
}

// NewTicker returns a ticker that fires each time the fake time passes
// another multiple of d after now. It panics if d <= 0, as time.NewTicker
// does.
func (f *Fake) NewTicker(d time.Duration) Ticker {
	if d <= 0 {
		panic("clock: non-positive interval for NewTicker")
	}
	t := &fakeTimer{f: f, c: make(chan time.Time, 1), period: d, index: -1}
	f.mu.Lock()
	f.arm(t, d)
	f.mu.Unlock()
	return fakeTicker{t}
}

// AfterFunc arranges for fn to be called, in the goroutine that advances
// the clock, once the fake time reaches Now()+d. A duration <= 0 makes fn
// run during the next Advance or Set (even Advance(0)), never inside
// AfterFunc itself, so a caller may hold its own locks. The returned
// Timer's C is nil; Stop reports whether it prevented the call.
func (f *Fake) AfterFunc(d time.Duration, fn func()) Timer {
	t := &fakeTimer{f: f, fn: fn, index: -1}
	f.mu.Lock()
	f.arm(t, d)
	f.mu.Unlock()
	return t
}

// Advance moves the fake time forward by d, firing every timer whose
// deadline it passes.
func (f *Fake) Advance(d time.Duration) {
	f.advance.Lock()
	defer f.advance.Unlock()
	f.mu.Lock()
	target := f.now.Add(d)
	f.mu.Unlock()
	f.set(target)
}

// Set moves the fake time to t, firing every timer whose deadline is at or
// before t in deadline order. Setting a time before Now fires the timers
// already due but does not move the time back: the fake clock, like a
// monotonic one, never goes back.
func (f *Fake) Set(t time.Time) {
	f.advance.Lock()
	defer f.advance.Unlock()
	f.set(t)
}

// set does the work of Set; f.advance must be held.
func (f *Fake) set(target time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for {
		if len(f.pending) == 0 || f.pending[0].when.After(target) {
			break
		}
		next := heap.Pop(&f.pending).(*fakeTimer)
		if next.when.After(f.now) {
			f.now = next.when
		}
		f.notify()
		if next.fn != nil {
			// Run the function without f.mu so that it can use the
			// clock. Timers it arms at or before target fire in this
			// same call, in order.
			f.mu.Unlock()
			next.fn()
			f.mu.Lock()
			continue
		}
		select {
		case next.c <- f.now:
		default: // an unread value is still there: drop this one
		}
		if next.period > 0 {
			f.arm(next, next.period)
		}
	}
	if target.After(f.now) {
		f.now = target
	}
}

// Pending returns the number of timers, tickers and AfterFunc calls armed
// now.
func (f *Fake) Pending() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.pending)
}

// NextDeadline returns the earliest deadline of an armed timer, and false if
// none is armed. A simulation uses it to jump straight to the next event.
func (f *Fake) NextDeadline() (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.pending) > 0 {
		return f.pending[0].when, true
	}
	return time.Time{}, false
}

// WaitForTimers blocks until at least n timers, tickers or AfterFunc calls
// are armed, or ctx ends. It is how a test waits for a goroutine to reach
// its next timed wait before advancing the clock.
func (f *Fake) WaitForTimers(ctx context.Context, n int) error {
	for {
		f.mu.Lock()
		count, ch := len(f.pending), f.changed
		f.mu.Unlock()
		if count >= n {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// arm schedules t to fire d after now. A channel timer (not a ticker, not
// a function) with d <= 0 fires at once instead. f.mu must be held.
func (f *Fake) arm(t *fakeTimer, d time.Duration) {
	if d <= 0 && t.fn == nil && t.period == 0 {
		select {
		case t.c <- f.now:
		default:
		}
		return
	}
	f.seq++
	t.when, t.seq = f.now.Add(d), f.seq
	heap.Push(&f.pending, t)
	f.notify()
}

func (f *Fake) notify() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// timerHeap orders armed timers by deadline; ties go to the one armed
// first. Each timer knows its index, so Stop and Reset remove it in
// O(log n).
type timerHeap []*fakeTimer

func (h timerHeap) Len() int { return len(h) }

func (h timerHeap) Less(i, j int) bool {
	if !h[i].when.Equal(h[j].when) {
		return h[i].when.Before(h[j].when)
	}
	return h[i].seq < h[j].seq
}

func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}

func (h *timerHeap) Push(x any) {
	t := x.(*fakeTimer)
	t.index = len(*h)
	*h = append(*h, t)
}

func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	t.index = -1
	return t
}

// fakeTimer is a Fake's timer, ticker (period > 0) or AfterFunc call
// (fn != nil, c == nil).
type fakeTimer struct {
	f      *Fake
	c      chan time.Time
	fn     func()
	when   time.Time
	seq    uint64
	period time.Duration
	index  int // in Fake.pending; -1 while not armed
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Stop() bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	return t.disarm()
}

func (t *fakeTimer) Reset(d time.Duration) bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	active := t.disarm()
	t.f.arm(t, d)
	return active
}

// disarm removes t from the pending set and discards an unread value. It
// reports whether t was active: armed, or fired with its value not yet
// received (as time.Timer reports since Go 1.23). t.f.mu must be held.
func (t *fakeTimer) disarm() bool {
	active := t.index >= 0
	if active {
		heap.Remove(&t.f.pending, t.index)
		t.f.notify()
	}
	if t.c != nil {
		select {
		case <-t.c:
			active = true
		default:
		}
	}
	return active
}

type fakeTicker struct{ t *fakeTimer }

func (k fakeTicker) C() <-chan time.Time { return k.t.c }
func (k fakeTicker) Stop()               { k.t.Stop() }
