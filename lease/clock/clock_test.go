package clock_test

import (
	"testing"
	"time"

	"github.com/hakit/hakit/lease/clock"
)

// The real clock is package time; a smoke test that each piece is wired.
func TestRealClock(t *testing.T) {
	c := clock.Real()
	start := c.Now()
	tm := c.NewTimer(time.Millisecond)
	if v := <-tm.C(); v.Before(start) {
		t.Errorf("timer fired at %v, before it was made at %v", v, start)
	}
	if tm.Stop() {
		t.Error("Stop after the value was received = true")
	}
	tk := c.NewTicker(time.Millisecond)
	<-tk.C()
	<-tk.C()
	tk.Stop()
	ran := make(chan struct{})
	clock.AfterFunc(c, time.Millisecond, func() { close(ran) })
	<-ran
	stopped := clock.AfterFunc(c, time.Hour, func() { t.Error("stopped AfterFunc ran") })
	if !stopped.Stop() {
		t.Error("Stop of a pending AfterFunc = false")
	}
	if d := c.Now().Sub(start); d <= 0 {
		t.Errorf("time did not move forward: %v", d)
	}
}

// bare hides Fake's own AfterFunc so that clock.AfterFunc takes its
// fallback path, a goroutine per arming.
type bare struct{ f *clock.Fake }

func (b bare) Now() time.Time                         { return b.f.Now() }
func (b bare) NewTimer(d time.Duration) clock.Timer   { return b.f.NewTimer(d) }
func (b bare) NewTicker(d time.Duration) clock.Ticker { return b.f.NewTicker(d) }

func TestAfterFuncFallback(t *testing.T) {
	f := clock.NewFake(epoch)
	c := bare{f}
	ran := make(chan time.Time, 4)
	tm := clock.AfterFunc(c, time.Second, func() { ran <- f.Now() })
	if tm.C() != nil {
		t.Error("C is not nil")
	}
	f.Advance(time.Second)
	if v := <-ran; !v.Equal(epoch.Add(time.Second)) {
		t.Errorf("ran at %v, want %v", v, epoch.Add(time.Second))
	}
	if tm.Stop() {
		t.Error("Stop after the call = true")
	}

	if tm.Reset(time.Second) {
		t.Error("Reset of a spent call = true")
	}
	if !tm.Reset(2 * time.Second) {
		t.Error("Reset of a pending call = false")
	}
	// Only the latest arming may run: once, after 2s.
	f.Advance(time.Second)
	f.Advance(time.Second)
	if v := <-ran; !v.Equal(epoch.Add(3 * time.Second)) {
		t.Errorf("ran at %v, want %v", v, epoch.Add(3*time.Second))
	}
	if tm.Reset(time.Second) {
		t.Error("Reset after the call ran = true")
	}
	if !tm.Stop() {
		t.Error("Stop of a pending call = false")
	}
	f.Advance(time.Hour)
	select {
	case v := <-ran:
		t.Errorf("a stopped or superseded call ran at %v", v)
	default:
	}
}
