package clock

import (
	"context"
	"sort"
	"sync"
	"time"
)

// Fake is a Clock whose time moves only when Advance or Set is called. Timers
// and tickers fire, in deadline order, during the call that moves time past
// their deadline. A Fake is safe for concurrent use.
//
// Tests wait for the code under test to arm its timers with WaitForTimers
// instead of sleeping.
type Fake struct {
	mu      sync.Mutex
	now     time.Time
	seq     uint64
	pending map[*fakeTimer]struct{}
	changed chan struct{} // closed and replaced whenever pending changes
}

// NewFake returns a Fake set to start.
func NewFake(start time.Time) *Fake {
	return &Fake{now: start, pending: map[*fakeTimer]struct{}{}, changed: make(chan struct{})}
}

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// NewTimer returns a timer that fires when the fake time reaches Now()+d.
func (f *Fake) NewTimer(d time.Duration) Timer {
	t := &fakeTimer{f: f, c: make(chan time.Time, 1)}
	f.mu.Lock()
	f.arm(t, d)
	f.mu.Unlock()
	return t
}

// NewTicker returns a ticker that fires each time the fake time passes
// another multiple of d after now.
func (f *Fake) NewTicker(d time.Duration) Ticker {
	if d <= 0 {
		panic("clock: non-positive interval for NewTicker")
	}
	t := &fakeTimer{f: f, c: make(chan time.Time, 1), period: d}
	f.mu.Lock()
	f.arm(t, d)
	f.mu.Unlock()
	return fakeTicker{t}
}

// Advance moves the fake time forward by d, firing every timer whose
// deadline it passes.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	target := f.now.Add(d)
	f.mu.Unlock()
	f.Set(target)
}

// Set moves the fake time to t, firing every timer whose deadline is at or
// before t in deadline order. Setting a time before Now is ignored: the
// fake clock, like a monotonic one, never goes back.
func (f *Fake) Set(t time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for {
		next := f.earliest()
		if next == nil || next.when.After(t) {
			break
		}
		if next.when.After(f.now) {
			f.now = next.when
		}
		delete(f.pending, next)
		select {
		case next.c <- f.now:
		default: // an unread value is still there; like time.Ticker, drop
		}
		if next.period > 0 {
			f.arm(next, next.period)
		}
		f.notify()
	}
	if t.After(f.now) {
		f.now = t
	}
}

// Pending returns the number of timers and tickers armed now.
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
	if t := f.earliest(); t != nil {
		return t.when, true
	}
	return time.Time{}, false
}

// WaitForTimers blocks until at least n timers or tickers are armed, or ctx
// ends. It is how a test waits for a goroutine to reach its next timed wait.
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

// arm schedules t to fire d after now. f.mu must be held.
func (f *Fake) arm(t *fakeTimer, d time.Duration) {
	f.seq++
	t.when, t.seq = f.now.Add(d), f.seq
	f.pending[t] = struct{}{}
	f.notify()
}

func (f *Fake) notify() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// earliest returns the pending timer that fires first; ties go to the one
// armed first. f.mu must be held.
func (f *Fake) earliest() *fakeTimer {
	var all []*fakeTimer
	for t := range f.pending {
		all = append(all, t)
	}
	if len(all) == 0 {
		return nil
	}
	sort.Slice(all, func(i, j int) bool {
		if !all[i].when.Equal(all[j].when) {
			return all[i].when.Before(all[j].when)
		}
		return all[i].seq < all[j].seq
	})
	return all[0]
}

type fakeTimer struct {
	f      *Fake
	c      chan time.Time
	when   time.Time
	seq    uint64
	period time.Duration
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Stop() bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	_, ok := t.f.pending[t]
	delete(t.f.pending, t)
	if ok {
		t.f.notify()
	}
	return ok
}

func (t *fakeTimer) Reset(d time.Duration) bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	_, ok := t.f.pending[t]
	select {
	case <-t.c:
	default:
	}
	t.f.arm(t, d)
	return ok
}

type fakeTicker struct{ t *fakeTimer }

func (k fakeTicker) C() <-chan time.Time { return k.t.c }
func (k fakeTicker) Stop()               { k.t.Stop() }
