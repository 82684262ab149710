package hatest

import (
	"flag"
	"fmt"

	"github.com/hakit/hakit/lease/memlease"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"pgregory.net/rapid"
)

var schedules = flag.Int("hatest.schedules", 0, "number of random fault schedules TestProperty runs (default: a short run; it sets -rapid.checks)")

// optionsOf draws the configurations the property test explores: two to
// five members, leases of one to five seconds, networks from fast to
// slower than a tenth of the lease, clock drift up to 9% (the lease's
// drift margin is 10%), and different
// batching and hold-offs. rapid shrinks towards the defaults.
func optionsOf() *rapid.Generator[Options] {
	return rapid.Custom(func(t *rapid.T) Options {
		ttl := time.Duration(rapid.IntRange(1, 5).Draw(t, "ttl-s")) * time.Second
		return Options{
			Members:         rapid.IntRange(3, 5).Draw(t, "members") - rapid.IntRange(0, 1).Draw(t, "fewer"),
			Lease:           memleaseOptions(ttl),
			HoldOff:         time.Duration(rapid.IntRange(1, 20).Draw(t, "holdoff-100ms")) * 100 * time.Millisecond,
			MaxDelay:        time.Duration(rapid.IntRange(1, 200).Draw(t, "maxdelay-ms")) * time.Millisecond,
			MaxDrift:        float64(rapid.IntRange(1, 9).Draw(t, "drift-%")) / 100, // within the 10% margin
			Batch:           rapid.IntRange(1, 10).Draw(t, "batch"),
			CheckpointEvery: rapid.IntRange(1, 5).Draw(t, "checkpoint-every"),
		}
	})
}

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
	var runs, faults, ops, worst, worstBound atomic.Int64
	rapid.Check(t, func(rt *rapid.T) {
		seed := rapid.Int64().Draw(rt, "seed")
		opts := optionsOf().Draw(rt, "options")
		s := ScheduleOf(opts.Members, 6, 8*time.Second, 4*time.Second).Draw(rt, "schedule")
		h, nf := runSchedule(rt, seed, s, opts)
		runs.Add(1)
		faults.Add(int64(nf))
		ops.Add(int64(len(h.Ops)))
		if err := Check(h); err != nil {
			rt.Fatalf("seed %d options %s schedule %v:\n%v\nfaults:\n%v", seed, describe(opts), s, err, h.Faults)
		}
		if d, ok := Recovery(h); ok && !h.Healed.IsZero() && int64(d) > worst.Load() {
			worst.Store(int64(d))
			worstBound.Store(int64(h.Bound))
		}
	})
	t.Logf("schedules run: %d, faults injected: %d, calls recorded: %d, violations: 0; slowest recovery after the last heal %v (its bound %v)",
		runs.Load(), faults.Load(), ops.Load(), time.Duration(worst.Load()), time.Duration(worstBound.Load()))
}

func memleaseOptions(ttl time.Duration) memlease.Options { return memlease.Options{TTL: ttl} }

// describe prints the options the property test draws, for a failure
// message that reproduces the run.
func describe(o Options) string {
	return fmt.Sprintf("{Members: %d, Lease: {TTL: %v}, HoldOff: %v, MaxDelay: %v, MaxDrift: %v, Batch: %d, CheckpointEvery: %d}",
		o.Members, o.Lease.TTL, o.HoldOff, o.MaxDelay, o.MaxDrift, o.Batch, o.CheckpointEvery)
}
