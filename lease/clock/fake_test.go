package clock_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/hakit/hakit/lease/clock"
)

var epoch = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func TestFakeFiresInDeadlineOrder(t *testing.T) {
	f := clock.NewFake(epoch)
	var mu sync.Mutex
	var got []string
	record := func(name string) func() {
		return func() {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, fmt.Sprintf("%s@%v", name, f.Now().Sub(epoch)))
		}
	}
	clock.AfterFunc(f, 3*time.Second, record("c"))
	clock.AfterFunc(f, time.Second, record("a"))
	clock.AfterFunc(f, 2*time.Second, record("b1"))
	clock.AfterFunc(f, 2*time.Second, record("b2")) // same deadline: armed later, fires later
	clock.AfterFunc(f, 4*time.Second, record("late"))
	f.Advance(3500 * time.Millisecond)
	want := []string{"a@1s", "b1@2s", "b2@2s", "c@3s"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("fired %v, want %v", got, want)
	}
	if now := f.Now().Sub(epoch); now != 3500*time.Millisecond {
		t.Fatalf("Now after Advance = epoch+%v, want epoch+3.5s", now)
	}
	if f.Pending() != 1 {
		t.Fatalf("Pending = %d, want 1 (the 4s timer)", f.Pending())
	}
}

func TestFakeChannelTimersCarryTheirDeadline(t *testing.T) {
	f := clock.NewFake(epoch)
	t1, t2 := f.NewTimer(2*time.Second), f.NewTimer(time.Second)
	f.Advance(10 * time.Second)
	if v := <-t1.C(); !v.Equal(epoch.Add(2 * time.Second)) {
		t.Errorf("timer 1 delivered %v, want its deadline %v", v, epoch.Add(2*time.Second))
	}
	if v := <-t2.C(); !v.Equal(epoch.Add(time.Second)) {
		t.Errorf("timer 2 delivered %v, want its deadline %v", v, epoch.Add(time.Second))
	}
}

// TestFakeTimerSemantics checks Stop and Reset against what time.Timer
// does since Go 1.23: an unread value counts as active and is discarded.
func TestFakeTimerSemantics(t *testing.T) {
	tests := []struct {
		name       string
		run        func(f *clock.Fake, tm clock.Timer) bool // returns Stop's or Reset's result
		wantResult bool
		wantValue  bool // a value is ready on C afterwards
		wantArmed  bool // still pending afterwards
	}{
		{"stop pending", func(f *clock.Fake, tm clock.Timer) bool { return tm.Stop() }, true, false, false},
		{"stop fired unread", func(f *clock.Fake, tm clock.Timer) bool { f.Advance(time.Second); return tm.Stop() }, true, false, false},
		{"stop fired and read", func(f *clock.Fake, tm clock.Timer) bool { f.Advance(time.Second); <-tm.C(); return tm.Stop() }, false, false, false},
		{"stop twice", func(f *clock.Fake, tm clock.Timer) bool { tm.Stop(); return tm.Stop() }, false, false, false},
		{"reset pending", func(f *clock.Fake, tm clock.Timer) bool { return tm.Reset(time.Minute) }, true, false, true},
		{"reset fired unread", func(f *clock.Fake, tm clock.Timer) bool { f.Advance(time.Second); return tm.Reset(time.Minute) }, true, false, true},
		{"reset fired and read", func(f *clock.Fake, tm clock.Timer) bool {
			f.Advance(time.Second)
			<-tm.C()
			return tm.Reset(time.Minute)
		}, false, false, true},
		{"reset stopped", func(f *clock.Fake, tm clock.Timer) bool { tm.Stop(); return tm.Reset(time.Minute) }, false, false, true},
		{"reset to zero fires at once", func(f *clock.Fake, tm clock.Timer) bool { return tm.Reset(0) }, true, true, false},
		{"reset negative fires at once", func(f *clock.Fake, tm clock.Timer) bool { return tm.Reset(-time.Second) }, true, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := clock.NewFake(epoch)
			tm := f.NewTimer(time.Second)
			if got := tt.run(f, tm); got != tt.wantResult {
				t.Errorf("result = %v, want %v", got, tt.wantResult)
			}
			select {
			case <-tm.C():
				if !tt.wantValue {
					t.Errorf("a value is ready on C, want none")
				}
			default:
				if tt.wantValue {
					t.Errorf("no value on C, want one")
				}
			}
			if armed := f.Pending() == 1; armed != tt.wantArmed {
				t.Errorf("armed = %v, want %v", armed, tt.wantArmed)
			}
		})
	}
}

func TestFakeResetMovesDeadline(t *testing.T) {
	f := clock.NewFake(epoch)
	tm := f.NewTimer(time.Second)
	f.Advance(500 * time.Millisecond)
	tm.Reset(time.Second) // now due at 1.5s
	f.Advance(900 * time.Millisecond)
	select {
	case v := <-tm.C():
		t.Fatalf("fired at %v, before its reset deadline", v)
	default:
	}
	f.Advance(100 * time.Millisecond)
	if v := <-tm.C(); !v.Equal(epoch.Add(1500 * time.Millisecond)) {
		t.Fatalf("fired with %v, want %v", v, epoch.Add(1500*time.Millisecond))
	}
}

func TestFakeNewTimerNonPositiveFiresAtOnce(t *testing.T) {
	f := clock.NewFake(epoch)
	for _, d := range []time.Duration{0, -time.Second} {
		select {
		case v := <-f.NewTimer(d).C():
			if !v.Equal(epoch) {
				t.Errorf("NewTimer(%v) delivered %v, want %v", d, v, epoch)
			}
		default:
			t.Errorf("NewTimer(%v) did not fire at once", d)
		}
	}
	if f.Pending() != 0 {
		t.Errorf("Pending = %d, want 0", f.Pending())
	}
}

func TestFakeTickerDropsUnreadTicks(t *testing.T) {
	f := clock.NewFake(epoch)
	tk := f.NewTicker(time.Second)
	f.Advance(3500 * time.Millisecond) // ticks at 1s, 2s, 3s; only the first is kept
	if v := <-tk.C(); !v.Equal(epoch.Add(time.Second)) {
		t.Fatalf("first tick %v, want %v", v, epoch.Add(time.Second))
	}
	select {
	case v := <-tk.C():
		t.Fatalf("a second tick %v was kept for a slow receiver; want it dropped", v)
	default:
	}
	f.Advance(500 * time.Millisecond) // the 4s tick: still on the original grid
	if v := <-tk.C(); !v.Equal(epoch.Add(4 * time.Second)) {
		t.Fatalf("tick %v, want %v", v, epoch.Add(4*time.Second))
	}
	f.Advance(time.Second)
	tk.Stop()
	select {
	case v := <-tk.C():
		t.Fatalf("Stop left the unread tick %v on C", v)
	default:
	}
	f.Advance(10 * time.Second)
	select {
	case v := <-tk.C():
		t.Fatalf("stopped ticker ticked at %v", v)
	default:
	}
	if f.Pending() != 0 {
		t.Fatalf("Pending = %d after Stop, want 0", f.Pending())
	}
}

func TestFakeNewTickerPanicsOnNonPositive(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("NewTicker(0) did not panic")
		}
	}()
	clock.NewFake(epoch).NewTicker(0)
}

func TestFakeAfterFunc(t *testing.T) {
	t.Run("zero runs at the next advance, not inside AfterFunc", func(t *testing.T) {
		f := clock.NewFake(epoch)
		ran := false
		clock.AfterFunc(f, 0, func() { ran = true })
		if ran {
			t.Fatal("ran inside AfterFunc")
		}
		f.Advance(0)
		if !ran {
			t.Fatal("did not run during Advance(0)")
		}
	})
	t.Run("stop prevents the call", func(t *testing.T) {
		f := clock.NewFake(epoch)
		tm := clock.AfterFunc(f, time.Second, func() { t.Error("stopped function ran") })
		if !tm.Stop() {
			t.Error("Stop = false for a pending call")
		}
		if tm.Stop() {
			t.Error("second Stop = true")
		}
		if tm.C() != nil {
			t.Error("C is not nil")
		}
		f.Advance(time.Hour)
	})
	t.Run("a function arms timers that fire in the same advance", func(t *testing.T) {
		f := clock.NewFake(epoch)
		var at []time.Duration
		var tick func()
		var tm clock.Timer
		tick = func() {
			at = append(at, f.Now().Sub(epoch))
			tm.Reset(time.Second)
		}
		tm = clock.AfterFunc(f, time.Second, tick)
		f.Advance(3 * time.Second)
		if fmt.Sprint(at) != "[1s 2s 3s]" {
			t.Fatalf("ran at %v, want [1s 2s 3s]", at)
		}
		if !tm.Stop() {
			t.Fatal("the re-armed call is not pending")
		}
	})
}

// TestFakeStopResetDuringSet: while Advance runs a function, another
// goroutine stops one timer and resets another; the stopped one must not
// fire, the reset one fires at its new deadline within the same Advance.
func TestFakeStopResetDuringSet(t *testing.T) {
	f := clock.NewFake(epoch)
	inside, release := make(chan struct{}), make(chan struct{})
	clock.AfterFunc(f, time.Second, func() { close(inside); <-release })
	stopped := f.NewTimer(2 * time.Second)
	moved := f.NewTimer(10 * time.Second)
	done := make(chan struct{})
	go func() { defer close(done); f.Advance(5 * time.Second) }()
	<-inside
	if !stopped.Stop() {
		t.Error("Stop during Advance = false for a pending timer")
	}
	if !moved.Reset(2 * time.Second) { // from now (1s): due at 3s
		t.Error("Reset during Advance = false for a pending timer")
	}
	if got := f.Now(); !got.Equal(epoch.Add(time.Second)) {
		t.Errorf("Now inside the 1s function = %v, want %v", got, epoch.Add(time.Second))
	}
	close(release)
	<-done
	select {
	case v := <-stopped.C():
		t.Errorf("stopped timer fired at %v", v)
	default:
	}
	select {
	case v := <-moved.C():
		if !v.Equal(epoch.Add(3 * time.Second)) {
			t.Errorf("reset timer fired at %v, want %v", v, epoch.Add(3*time.Second))
		}
	default:
		t.Error("reset timer did not fire during the Advance")
	}
}

func TestFakeSetNeverGoesBack(t *testing.T) {
	f := clock.NewFake(epoch)
	f.Advance(time.Minute)
	f.Set(epoch)
	if got := f.Now(); !got.Equal(epoch.Add(time.Minute)) {
		t.Fatalf("Now after Set to the past = %v, want %v", got, epoch.Add(time.Minute))
	}
	f.Set(epoch.Add(2 * time.Minute))
	if got := f.Now(); !got.Equal(epoch.Add(2 * time.Minute)) {
		t.Fatalf("Now after Set = %v, want %v", got, epoch.Add(2*time.Minute))
	}
}

func TestFakeNextDeadline(t *testing.T) {
	f := clock.NewFake(epoch)
	if _, ok := f.NextDeadline(); ok {
		t.Fatal("NextDeadline reported a deadline with nothing armed")
	}
	f.NewTimer(3 * time.Second)
	f.NewTicker(2 * time.Second)
	if d, ok := f.NextDeadline(); !ok || !d.Equal(epoch.Add(2*time.Second)) {
		t.Fatalf("NextDeadline = %v, %v; want %v", d, ok, epoch.Add(2*time.Second))
	}
}

func TestFakeWaitForTimers(t *testing.T) {
	f := clock.NewFake(epoch)
	armed := make(chan clock.Timer)
	go func() {
		tm := f.NewTimer(time.Second)
		armed <- tm
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.WaitForTimers(ctx, 1); err != nil {
		t.Fatalf("WaitForTimers: %v", err)
	}
	tm := <-armed
	f.Advance(time.Second)
	<-tm.C()

	short, cancelShort := context.WithCancel(context.Background())
	cancelShort()
	if err := f.WaitForTimers(short, 1); err != context.Canceled {
		t.Fatalf("WaitForTimers with nothing armed and a cancelled context = %v, want context.Canceled", err)
	}
}

// TestFakeConcurrentUse hammers one Fake from many goroutines; run it with
// -race. Each worker checks that its timer never fires before its
// deadline.
func TestFakeConcurrentUse(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	f := clock.NewFake(epoch)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range 8 {
		rng := rand.New(rand.NewPCG(seed, uint64(w)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			tm := f.NewTimer(time.Duration(1+rng.IntN(50)) * time.Millisecond)
			tk := f.NewTicker(time.Duration(1+rng.IntN(50)) * time.Millisecond)
			defer tk.Stop()
			fn := clock.AfterFunc(f, time.Millisecond, func() { _ = f.Now() })
			for ctx.Err() == nil {
				d := time.Duration(1+rng.IntN(50)) * time.Millisecond
				switch rng.IntN(4) {
				case 0:
					armedAt := f.Now()
					tm.Reset(d)
					select {
					case v := <-tm.C():
						if v.Before(armedAt.Add(d)) {
							t.Errorf("timer reset at %v for %v fired at %v", armedAt, d, v)
							return
						}
					case <-ctx.Done():
					}
				case 1:
					tm.Stop()
				case 2:
					fn.Reset(d)
				case 3:
					select {
					case <-tk.C():
					default:
					}
				}
			}
		}()
	}
	for range 2000 {
		f.Advance(time.Millisecond)
	}
	cancel()
	wg.Wait()
}
