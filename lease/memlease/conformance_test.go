package memlease

import (
	"context"

	"testing"
	"time"

	"github.com/hakit/hakit/lease"
	"github.com/hakit/hakit/lease/clock"
	"github.com/hakit/hakit/lease/electortest"
)

// cluster runs one Election for electortest.
type cluster struct {
	e      *Election
	timing electortest.Timing
}

func (c *cluster) Members() []string { return []string{"m0", "m1", "m2", "m3"} }

func (c *cluster) Member(t *testing.T, id string) lease.Elector {
	t.Helper()
	m, err := c.e.Member(id, id+".example:7000")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func (c *cluster) Isolate(t *testing.T, id string) {
	t.Helper()
	if err := c.e.Isolate(id); err != nil {
		t.Fatal(err)
	}
}

func (c *cluster) Heal(t *testing.T, id string) {
	t.Helper()
	if err := c.e.Heal(id); err != nil {
		t.Fatal(err)
	}
}

func (c *cluster) Timing() electortest.Timing { return c.timing }

// runClock makes fake time pass while timers are pending, in steps of at
// most step, one step per pace of real time, until the test ends. The
// suite waits on channels and on its own timers of the Fake; this goroutine
// is what lets leases renew and expire meanwhile.
func runClock(t *testing.T, f *clock.Fake, step, pace time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		tick := time.NewTicker(pace)
		defer tick.Stop()
		for {
			if err := f.WaitForTimers(ctx, 1); err != nil {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			next, ok := f.NextDeadline()
			if !ok {
				continue
			}
			if limit := f.Now().Add(step); next.After(limit) {
				next = limit
			}
			f.Set(next)
		}
	}()
}

func TestConformanceFakeClock(t *testing.T) {
	const ttl = time.Second
	electortest.Run(t, func(t *testing.T) electortest.Cluster {
		f := clock.NewFake(time.Unix(1_000_000, 0))
		e, err := NewElection(f, Options{TTL: ttl})
		if err != nil {
			t.Fatal(err)
		}
		runClock(t, f, 10*time.Millisecond, time.Millisecond)
		return &cluster{e: e, timing: electortest.Timing{
			Clock: f,
			// Without a release on Resign, the successor would wait
			// for the expiry: at least TTL - RenewInterval (667ms)
			// after the resignation.
			Handover: 600 * time.Millisecond,
			Failover: 2 * ttl,
			Settle:   20 * time.Millisecond,
			Wait:     20 * time.Second,
		}}
	})
}

func TestConformanceRealClock(t *testing.T) {
	if testing.Short() {
		t.Skip("real-clock conformance takes a few seconds; run without -short")
	}
	const ttl = 300 * time.Millisecond
	electortest.Run(t, func(t *testing.T) electortest.Cluster {
		e, err := NewElection(clock.Real(), Options{TTL: ttl})
		if err != nil {
			t.Fatal(err)
		}
		return &cluster{e: e, timing: electortest.Timing{
			Handover: ttl / 2,
			Failover: 2 * ttl,
			Settle:   10 * time.Millisecond,
			Wait:     10 * time.Second,
		}}
	})
}
