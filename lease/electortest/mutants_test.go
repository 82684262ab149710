package electortest_test

import (
	"context"
	"errors"
	"flag"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/lease"
	"github.com/hakit/hakit/lease/clock"
	"github.com/hakit/hakit/lease/electortest"
	"github.com/hakit/hakit/lease/memlease"
)

// The suite must be able to fail. TestSuiteCatchesBrokenElectors runs it,
// in a child process, against memlease electors broken in one way each, and
// expects the named subtest to fail with the named complaint.

var mutantName = flag.String("electortest.mutant", "", "run the suite against this broken elector (used by TestSuiteCatchesBrokenElectors)")

func TestSuiteCatchesBrokenElectors(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child test process per broken elector")
	}
	tests := []struct {
		mutant, subtest, complaint string
	}{
		{"constant-token", "OneWinner", "not larger than"},
		{"no-self-fence", "CutOffHolder", "still open"},
		{"resign-keeps-lease", "ResignHandsOver", "timed out"},
		{"close-keeps-lease", "CloseReleases", "timed out"},
		{"cancel-leaves-campaign", "CampaignCancel", `member "m1"`},
		{"observe-skips-no-leader", "Observe", "has not delivered"},
		{"leader-stale", "Leader", "want member"},
		{"deadline-late", "CutOffHolder", "is after member"},
		{"deadline-zero", "OneWinner", "is not after the win"},
	}
	for _, tt := range tests {
		t.Run(tt.mutant, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestMutant$/^"+tt.subtest+"$", "-test.count=1", "-electortest.mutant="+tt.mutant)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("the suite passed elector %q; want %s to fail. Output:\n%s", tt.mutant, tt.subtest, out)
			}
			if !strings.Contains(string(out), "--- FAIL: TestMutant/"+tt.subtest) || !strings.Contains(string(out), tt.complaint) {
				t.Fatalf("elector %q: want subtest %s to fail with %q. Output:\n%s", tt.mutant, tt.subtest, tt.complaint, out)
			}
		})
	}
}

// TestMutant is the child: it runs the suite against one broken elector.
func TestMutant(t *testing.T) {
	if *mutantName == "" {
		t.Skip("run by TestSuiteCatchesBrokenElectors")
	}
	electortest.Run(t, func(t *testing.T) electortest.Cluster {
		c := newMemCluster(t)
		c.mutant = *mutantName
		c.timing.Wait = 2 * time.Second
		return c
	})
}

// TestMemlease runs the suite against the unbroken memlease, the control
// for the mutants.
func TestMemlease(t *testing.T) {
	electortest.Run(t, func(t *testing.T) electortest.Cluster { return newMemCluster(t) })
}

type memCluster struct {
	e      *memlease.Election
	timing electortest.Timing
	mutant string
}

func newMemCluster(t *testing.T) *memCluster {
	const ttl = time.Second
	f := clock.NewFake(time.Unix(1_000_000, 0))
	e, err := memlease.NewElection(f, memlease.Options{TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() { // fake time passes in 10ms steps, one per ms
		defer close(done)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			if f.WaitForTimers(ctx, 1) != nil {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if next, ok := f.NextDeadline(); ok {
				if limit := f.Now().Add(10 * time.Millisecond); next.After(limit) {
					next = limit
				}
				f.Set(next)
			}
		}
	}()
	return &memCluster{e: e, timing: electortest.Timing{Clock: f, Handover: 600 * time.Millisecond, Failover: 2 * ttl, Settle: 20 * time.Millisecond, Wait: 20 * time.Second}}
}

func (c *memCluster) Members() []string { return []string{"m0", "m1", "m2", "m3"} }

func (c *memCluster) Member(t *testing.T, id string) lease.Elector {
	m, err := c.e.Member(id, id+".example:7000")
	if err != nil {
		t.Fatal(err)
	}
	if c.mutant == "" {
		return m
	}
	return &broken{Elector: m, mutant: c.mutant}
}

func (c *memCluster) Isolate(t *testing.T, id string) {
	if err := c.e.Isolate(id); err != nil {
		t.Fatal(err)
	}
}

func (c *memCluster) Heal(t *testing.T, id string) {
	if err := c.e.Heal(id); err != nil {
		t.Fatal(err)
	}
}

func (c *memCluster) Timing() electortest.Timing { return c.timing }

// broken is a memlease Elector with one fault.
type broken struct {
	*memlease.Elector
	mutant string

	mu   sync.Mutex
	held *brokenTerm
}

func (b *broken) Campaign(ctx context.Context) (lease.Term, error) {
	if b.mutant == "cancel-leaves-campaign" {
		// Campaign on without ctx; report the cancellation anyway.
		type result struct {
			t   lease.Term
			err error
		}
		res := make(chan result, 1)
		go func() {
			t, err := b.Elector.Campaign(context.Background())
			res <- result{t, err}
		}()
		select {
		case r := <-res:
			if r.err != nil {
				return nil, r.err
			}
			return b.wrap(r.t), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	t, err := b.Elector.Campaign(ctx)
	if err != nil {
		return nil, err
	}
	return b.wrap(t), nil
}

func (b *broken) wrap(t lease.Term) lease.Term {
	bt := &brokenTerm{Term: t, b: b, done: make(chan struct{})}
	go func() {
		<-t.Done()
		if b.mutant != "no-self-fence" || errors.Is(t.Err(), lease.ErrResigned) {
			bt.end()
		}
	}()
	b.mu.Lock()
	b.held = bt
	b.mu.Unlock()
	return bt
}

func (b *broken) Close() error {
	if b.mutant == "close-keeps-lease" {
		b.mu.Lock()
		held := b.held
		b.mu.Unlock()
		if held != nil {
			held.end() // looks resigned, but the lease stays held and renewed
			return nil
		}
	}
	return b.Elector.Close()
}

func (b *broken) Observe(ctx context.Context) <-chan lease.Leader {
	in := b.Elector.Observe(ctx)
	if b.mutant != "observe-skips-no-leader" {
		return in
	}
	out := make(chan lease.Leader)
	go func() {
		defer close(out)
		for l := range in {
			if !l.IsZero() {
				out <- l
			}
		}
	}()
	return out
}

func (b *broken) Leader(ctx context.Context) (lease.Leader, error) {
	l, err := b.Elector.Leader(ctx)
	if b.mutant == "leader-stale" && err == nil {
		l.Token--
	}
	return l, err
}

type brokenTerm struct {
	lease.Term
	b    *broken
	once sync.Once
	done chan struct{}
}

func (t *brokenTerm) end() { t.once.Do(func() { close(t.done) }) }

func (t *brokenTerm) Done() <-chan struct{} { return t.done }

func (t *brokenTerm) Err() error {
	select {
	case <-t.done:
		if err := t.Term.Err(); err != nil {
			return err
		}
		return lease.ErrResigned
	default:
		return nil
	}
}

func (t *brokenTerm) Token() fence.Token {
	if t.b.mutant == "constant-token" {
		return 1
	}
	return t.Term.Token()
}

func (t *brokenTerm) Deadline() time.Time {
	switch t.b.mutant {
	case "deadline-late":
		return t.Term.Deadline().Add(time.Hour)
	case "deadline-zero":
		return time.Time{}
	}
	return t.Term.Deadline()
}

func (t *brokenTerm) Resign(ctx context.Context) error {
	if t.b.mutant == "resign-keeps-lease" {
		t.end()
		return nil
	}
	err := t.Term.Resign(ctx)
	t.end()
	return err
}
