package hatest

import (
	"flag"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"pgregory.net/rapid"
)

var schedules = flag.Int("hatest.schedules", 0, "number of random fault schedules TestProperty runs (default: a short run; it sets -rapid.checks)")

// propertyOptions are the options of the property tests: a 2 s lease and
// short delays, so that one schedule of faults within 8 s plus the
// liveness bound fits in about 20 s of virtual time.
var propertyOptions = Options{}

// runSchedule runs one schedule on a fresh World and returns its history.
func runSchedule(t interface{ Fatal(...any) }, seed int64, s Schedule, opts Options) (*History, int) {
	w, err := NewWorld(seed, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Apply(s)
	w.Run(s.End() + opts.Bound() + 2*time.Second)
	return w.History(), w.Faults()
}

// TestProperty runs many seeded fault schedules (partitions from the
// election, one-way and two-way cuts to the store and the sink, pauses,
// crashes with restart, message loss, slow and reordering networks,
// switchovers, clock drift) and checks every guarantee on each history.
// A failure prints the seed and rapid's shrunk schedule.
func TestProperty(t *testing.T) {
	n := 150
	if testing.Short() {
		n = 20
	}
	if *schedules > 0 {
		n = *schedules
	}
	if f := flag.Lookup("rapid.checks"); f != nil {
		old := f.Value.String()
		_ = f.Value.Set(strconv.Itoa(n))
		t.Cleanup(func() { _ = f.Value.Set(old) })
	}
	var runs, faults, ops, worst atomic.Int64
	rapid.Check(t, func(rt *rapid.T) {
		seed := rapid.Int64().Draw(rt, "seed")
		s := ScheduleOf(3, 6, 8*time.Second, 4*time.Second).Draw(rt, "schedule")
		h, nf := runSchedule(rt, seed, s, propertyOptions)
		runs.Add(1)
		faults.Add(int64(nf))
		ops.Add(int64(len(h.Ops)))
		if err := Check(h); err != nil {
			rt.Fatalf("seed %d schedule %v:\n%v\nfaults:\n%v", seed, s, err, h.Faults)
		}
		if d, ok := Recovery(h); ok && !h.Healed.IsZero() && int64(d) > worst.Load() {
			worst.Store(int64(d))
		}
	})
	t.Logf("schedules run: %d, faults injected: %d, calls recorded: %d, violations: 0; slowest recovery after the last heal %v (bound %v)",
		runs.Load(), faults.Load(), ops.Load(), time.Duration(worst.Load()), propertyOptions.Bound())
}
