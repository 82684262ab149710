package memlease

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hakit/hakit/lease"
	"github.com/hakit/hakit/lease/clock"
)

var epoch = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func TestOptionsValidation(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		ok   bool
	}{
		{"defaults", Options{}, true},
		{"ttl only", Options{TTL: time.Second}, true},
		{"negative ttl", Options{TTL: -time.Second}, false},
		{"margin half of ttl", Options{TTL: time.Second, DriftMargin: 500 * time.Millisecond}, false},
		{"negative margin", Options{TTL: time.Second, DriftMargin: -time.Millisecond}, false},
		{"renew after self-fence", Options{TTL: time.Second, DriftMargin: 100 * time.Millisecond, RenewInterval: 900 * time.Millisecond}, false},
		{"negative renew", Options{TTL: time.Second, RenewInterval: -time.Second}, false},
		{"all set", Options{TTL: time.Second, DriftMargin: 200 * time.Millisecond, RenewInterval: 250 * time.Millisecond}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewElection(clock.NewFake(epoch), tt.opts)
			if tt.ok != (err == nil) {
				t.Fatalf("NewElection(%+v) error = %v, want ok = %v", tt.opts, err, tt.ok)
			}
			if err != nil && (!errors.Is(err, ErrConfig) || !strings.HasPrefix(err.Error(), "memlease: invalid config: ")) {
				t.Fatalf("error %v does not wrap ErrConfig with its message", err)
			}
		})
	}
	// Every broken rule is reported, not only the first.
	_, err := NewElection(clock.NewFake(epoch), Options{TTL: -time.Second, RenewInterval: -time.Second})
	for _, field := range []string{"TTL: ", "DriftMargin: ", "RenewInterval: "} {
		if err == nil || !strings.Contains(err.Error(), "memlease: invalid config: "+field) {
			t.Errorf("NewElection with TTL and RenewInterval negative: %v; want it to name %s", err, field)
		}
	}
	e, _ := NewElection(clock.NewFake(epoch), Options{})
	if o := e.Options(); o.TTL != DefaultTTL || o.DriftMargin != DefaultTTL/10 || o.RenewInterval != DefaultTTL/3 {
		t.Fatalf("defaults = %+v", o)
	}
}

// fixture is an Election on a Fake that the test advances by hand; every
// step of the election happens inside Advance, so the test is
// deterministic.
type fixture struct {
	t       *testing.T
	f       *clock.Fake
	e       *Election
	mu      sync.Mutex
	changes []lease.Leader
}

func newFixture(t *testing.T) *fixture {
	x := &fixture{t: t, f: clock.NewFake(epoch)}
	e, err := NewElection(x.f, Options{TTL: time.Second, DriftMargin: 100 * time.Millisecond, RenewInterval: 300 * time.Millisecond,
		OnChange: func(l lease.Leader) {
			x.mu.Lock()
			x.changes = append(x.changes, l)
			x.mu.Unlock()
		}})
	if err != nil {
		t.Fatal(err)
	}
	x.e = e
	return x
}

func (x *fixture) member(id string) *Elector {
	x.t.Helper()
	m, err := x.e.Member(id, id+":1")
	if err != nil {
		x.t.Fatal(err)
	}
	x.t.Cleanup(func() { m.Close() })
	return m
}

// campaign starts m's Campaign and waits until it is queued or granted.
func (x *fixture) campaign(m *Elector) <-chan campaignResult {
	x.t.Helper()
	ch := make(chan campaignResult, 1)
	go func() {
		term, err := m.Campaign(context.Background())
		ch <- campaignResult{term, err}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !slices.Contains(x.e.Waiting(), m.ID()) && x.e.Holder().ID != m.ID() {
		if time.Now().After(deadline) {
			x.t.Fatalf("campaign of %s never reached the election", m.ID())
		}
		time.Sleep(time.Millisecond) // polling with a deadline for the goroutine to enqueue
	}
	return ch
}

type campaignResult struct {
	term lease.Term
	err  error
}

// term returns the Term a campaign won.
func (x *fixture) term(ch <-chan campaignResult) lease.Term {
	x.t.Helper()
	select {
	case r := <-ch:
		if r.err != nil {
			x.t.Fatalf("Campaign: %v", r.err)
		}
		return r.term
	case <-time.After(10 * time.Second):
		x.t.Fatal("Campaign did not return")
		return nil
	}
}

// at advances the fake time to epoch+d.
func (x *fixture) at(d time.Duration) { x.f.Set(epoch.Add(d)) }

func (x *fixture) holder(want string) {
	x.t.Helper()
	if got := x.e.Holder().ID; got != want {
		x.t.Fatalf("at %v: holder %q, want %q", x.f.Now().Sub(epoch), got, want)
	}
}

func open(t lease.Term) bool {
	select {
	case <-t.Done():
		return false
	default:
		return true
	}
}

// TestCutOffTimeline checks the exact instants: a holder cut off right
// after a renewal at 300ms fences itself at 300ms+TTL-margin = 1.2s, and
// the election grants the lease to the waiting member at 300ms+TTL = 1.3s.
func TestCutOffTimeline(t *testing.T) {
	x := newFixture(t)
	a, b := x.member("a"), x.member("b")
	ta := x.term(x.campaign(a))
	bc := x.campaign(b)
	x.at(300 * time.Millisecond) // a renews
	if err := x.e.Isolate("a"); err != nil {
		t.Fatal(err)
	}
	x.at(1199 * time.Millisecond)
	if !open(ta) {
		t.Fatalf("a's term ended at 1.199s, before its self-fencing deadline: %v", ta.Err())
	}
	x.at(1200 * time.Millisecond)
	if open(ta) || !errors.Is(ta.Err(), lease.ErrLost) {
		t.Fatalf("a's term at its self-fencing deadline: open %v, err %v", open(ta), ta.Err())
	}
	x.holder("a") // the election still counts a until the expiry
	if _, err := a.Leader(context.Background()); !errors.Is(err, ErrCutOff) {
		t.Fatalf("Leader of a cut-off member: %v, want ErrCutOff", err)
	}
	x.at(1299 * time.Millisecond)
	x.holder("a")
	x.at(1300 * time.Millisecond)
	x.holder("b")
	tb := x.term(bc)
	if tb.Token() <= ta.Token() {
		t.Fatalf("b's token %d not above a's %d", tb.Token(), ta.Token())
	}
	if err := x.e.Heal("a"); err != nil {
		t.Fatal(err)
	}
	x.at(5 * time.Second)
	x.holder("b")
	if !open(tb) {
		t.Fatalf("b's term ended: %v", tb.Err())
	}
	want := []lease.Leader{{ID: "a", Token: 1, Addr: "a:1"}, {}, {ID: "b", Token: 2, Addr: "b:1"}}
	if !slices.Equal(x.changes, want) {
		t.Fatalf("OnChange saw %v, want %v", x.changes, want)
	}
}

// TestHealBeforeSelfFence: a short cut-off does not end the term.
func TestHealBeforeSelfFence(t *testing.T) {
	x := newFixture(t)
	a := x.member("a")
	ta := x.term(x.campaign(a))
	x.e.Isolate("a")
	x.at(800 * time.Millisecond) // renewals at 300 and 600 went nowhere
	x.e.Heal("a")
	x.at(10 * time.Second)
	if !open(ta) {
		t.Fatalf("term ended after a cut-off shorter than its deadline: %v", ta.Err())
	}
	x.holder("a")
}

// TestPausedHolder is the case fencing exists for: a holder paused past
// the expiry still has Done open while a successor holds the lease; on
// Resume it notices and ends its term, and does not disturb the successor.
func TestPausedHolder(t *testing.T) {
	x := newFixture(t)
	a, b := x.member("a"), x.member("b")
	ta := x.term(x.campaign(a))
	bc := x.campaign(b)
	x.e.Pause("a")
	x.at(1 * time.Second) // expiry: the last renewal was at 0
	x.holder("b")
	tb := x.term(bc)
	if !open(ta) {
		t.Fatalf("a paused member's term ended while paused: %v", ta.Err())
	}
	x.at(3 * time.Second)
	x.e.Resume("a")
	if open(ta) || !errors.Is(ta.Err(), lease.ErrLost) {
		t.Fatalf("after Resume: open %v, err %v; want ended with ErrLost", open(ta), ta.Err())
	}
	x.holder("b")
	if !open(tb) {
		t.Fatalf("the successor's term ended: %v", tb.Err())
	}
}

// TestShortPause: a pause shorter than the self-fencing deadline is
// harmless; Resume renews at once.
func TestShortPause(t *testing.T) {
	x := newFixture(t)
	a := x.member("a")
	ta := x.term(x.campaign(a))
	x.e.Pause("a")
	x.at(850 * time.Millisecond)
	x.e.Resume("a")
	x.at(1700 * time.Millisecond) // 850ms + TTL - margin = 1.75s
	if !open(ta) {
		t.Fatalf("term ended after a short pause: %v", ta.Err())
	}
	x.holder("a")
}

// TestPausedCampaignerSkipped: a paused campaigner is passed over, keeps
// its place, and wins once resumed.
func TestPausedCampaignerSkipped(t *testing.T) {
	x := newFixture(t)
	a, b, c := x.member("a"), x.member("b"), x.member("c")
	ta := x.term(x.campaign(a))
	bc := x.campaign(b)
	x.e.Pause("b")
	cc := x.campaign(c)
	ta.Resign(context.Background())
	x.holder("c")
	tc := x.term(cc)
	tc.Resign(context.Background())
	x.holder("")
	if got := x.e.Waiting(); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("Waiting = %q, want [b]", got)
	}
	x.e.Resume("b")
	x.holder("b")
	if tb := x.term(bc); tb.Token() != 3 {
		t.Fatalf("b's token %d, want 3", tb.Token())
	}
}

// TestCutOffObserverCatchesUp: an isolated member's observer receives
// nothing while cut off and then every change, in order, after Heal.
func TestCutOffObserverCatchesUp(t *testing.T) {
	x := newFixture(t)
	a, b, o := x.member("a"), x.member("b"), x.member("o")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := o.Observe(ctx)
	if l := <-ch; !l.IsZero() {
		t.Fatalf("first value %v, want the zero Leader", l)
	}
	x.e.Isolate("o")
	ta := x.term(x.campaign(a))
	ta.Resign(context.Background())
	tb := x.term(x.campaign(b))
	select {
	case l := <-ch:
		t.Fatalf("a cut-off observer received %v", l)
	case <-time.After(20 * time.Millisecond): // a bounded check that nothing arrives
	}
	x.e.Heal("o")
	var got []lease.Leader
	for range 3 {
		got = append(got, <-ch)
	}
	want := []lease.Leader{{ID: "a", Token: ta.Token(), Addr: "a:1"}, {}, {ID: "b", Token: tb.Token(), Addr: "b:1"}}
	if !slices.Equal(got, want) {
		t.Fatalf("after Heal observed %v, want %v", got, want)
	}
}

// TestIsolatedResign: a cut-off holder that resigns ends its term at once,
// but the election only frees the lease at the expiry.
func TestIsolatedResign(t *testing.T) {
	x := newFixture(t)
	a, b := x.member("a"), x.member("b")
	ta := x.term(x.campaign(a))
	bc := x.campaign(b)
	x.e.Isolate("a")
	ta.Resign(context.Background())
	if open(ta) || !errors.Is(ta.Err(), lease.ErrResigned) {
		t.Fatalf("after Resign: open %v, err %v", open(ta), ta.Err())
	}
	x.holder("a")
	x.at(time.Second)
	x.holder("b")
	x.term(bc)
}

func TestMemberErrors(t *testing.T) {
	x := newFixture(t)
	a := x.member("a")
	if _, err := x.e.Member("a", ""); !errors.Is(err, ErrDuplicateMember) {
		t.Fatalf("second live member a: %v, want ErrDuplicateMember", err)
	}
	if err := x.e.Isolate("nobody"); !errors.Is(err, ErrUnknownMember) {
		t.Fatalf("Isolate of an unknown member: %v, want ErrUnknownMember", err)
	}
	ta := x.term(x.campaign(a))
	if _, err := a.Campaign(context.Background()); !errors.Is(err, ErrHolding) {
		t.Fatalf("Campaign while holding: %v, want ErrHolding", err)
	}
	b := x.member("b")
	bc := x.campaign(b)
	if _, err := b.Campaign(context.Background()); !errors.Is(err, ErrCampaigning) {
		t.Fatalf("second concurrent Campaign: %v, want ErrCampaigning", err)
	}
	a.Close()
	x.holder("b")
	tb := x.term(bc)
	if open(ta) {
		t.Fatal("Close left the term open")
	}
	// A closed member's ID can be used again, as by a restarted process.
	a2 := x.member("a")
	a2c := x.campaign(a2)
	tb.Resign(context.Background())
	ta2 := x.term(a2c)
	if ta2.Token() <= ta.Token() {
		t.Fatalf("restarted member's token %d not above %d", ta2.Token(), ta.Token())
	}
}
