package etcdlease_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hakit/hakit/lease"
	"github.com/hakit/hakit/lease/clock"
	"github.com/hakit/hakit/lease/etcdlease"
	"github.com/hakit/hakit/storage/etcdstore/etcdtest"
)

// TestDeadlineOnFakeClock checks the deadline rule on an injected clock:
// the deadline starts at the grant's send time + TTL - margin, an answered
// keepalive moves it to its own send time + TTL - margin, and with the
// link cut Done closes exactly when the clock reaches the deadline, not a
// tick before.
// keeperTimers is how many timers a keeper of a held term has armed on
// its clock: the deadline, the next keepalive, and the pulse that measures
// how late the process runs.
const keeperTimers = 3

// walk moves fake time to until the way a process that is not starved
// sees it pass: from one timer to the next, letting the keeper handle each
// and arm its timers again before time moves on. It stops early if term
// ends.
func walk(t *testing.T, fake *clock.Fake, term *etcdlease.Term, until time.Time) {
	t.Helper()
	for !isClosed(term.Done()) {
		next, ok := fake.NextDeadline()
		if !ok || next.After(until) {
			break
		}
		fake.Set(next)
		waitFor(t, 10*time.Second, "the keeper to arm its timers again", func() bool {
			return isClosed(term.Done()) || fake.Pending() >= keeperTimers
		})
	}
	if !isClosed(term.Done()) {
		fake.Set(until)
	}
}

// fakeHolder is a member on a fake clock holding a term, with its link to
// etcd through a proxy the test can cut.
func fakeHolder(t *testing.T, ttl, margin time.Duration) (*clock.Fake, *etcdtest.Proxy, *etcdlease.Term) {
	t.Helper()
	s := etcdtest.Start(t)
	p := etcdtest.NewProxy(t, s)
	fake := clock.NewFake(time.Unix(1_000_000, 0))
	e, err := etcdlease.New(etcdlease.Config{
		Client: p.Client(t), ID: "a", Prefix: newPrefix(t), TTL: ttl, DriftMargin: margin,
		Clock: fake, Logger: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	term := mustCampaign(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := fake.WaitForTimers(ctx, keeperTimers); err != nil {
		t.Fatal(err)
	}
	return fake, p, term
}

// TestDeadlineOnFakeClock checks the deadline rule on an injected clock:
// the deadline starts at the grant's send time + TTL - margin, an answered
// keepalive moves it to its own send time + TTL - margin, and with the
// link cut (and time passing without stalls) Done closes exactly when the
// clock reaches the deadline, not a tick before.
func TestDeadlineOnFakeClock(t *testing.T) {
	const ttl, margin = 3 * time.Second, 300 * time.Millisecond
	fake, p, term := fakeHolder(t, ttl, margin)
	start := fake.Now()
	if got, want := term.Deadline(), start.Add(ttl-margin); !got.Equal(want) {
		t.Fatalf("deadline after the grant %v, want %v", got, want)
	}
	walk(t, fake, term, start.Add(ttl/3)) // the first keepalive, sent at start+TTL/3
	want := start.Add(ttl/3 + ttl - margin)
	waitFor(t, 10*time.Second, "the answered keepalive to move the deadline", func() bool {
		return term.Deadline().Equal(want)
	})

	p.Blackhole(etcdtest.Both)
	// The keepalives go out but are never answered.
	walk(t, fake, term, want.Add(-time.Nanosecond))
	if isClosed(term.Done()) {
		t.Fatalf("Done closed before the deadline: %v", term.Err())
	}
	if term.Deadline() != want {
		t.Fatalf("deadline moved to %v with the link cut", term.Deadline())
	}
	fake.Set(want)
	select {
	case <-term.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("Done still open after the clock reached the deadline")
	}
	errIs(t, term.Err(), lease.ErrLost)
	if !strings.Contains(term.Err().Error(), "deadline") || !term.EndedAt().Equal(want) {
		t.Fatalf("ended at %v with %v; want at %v, naming the deadline", term.EndedAt(), term.Err(), want)
	}
	p.Heal()
}

// A holder whose process is starved notices that its own timers fire late
// and steps down before its deadline, rather than trust a deadline timer
// that may fire as late: here a timer fires 400 ms late (the fake clock
// jumps past it, as a starved process sees time), more than half the
// 300 ms margin, and Done closes at once, well before the deadline.
func TestStarvedHolderStepsDownEarly(t *testing.T) {
	const ttl, margin = 3 * time.Second, 300 * time.Millisecond
	fake, p, term := fakeHolder(t, ttl, margin)
	deadline := term.Deadline()
	p.Blackhole(etcdtest.Both)
	defer p.Heal()
	due, _ := fake.NextDeadline()
	fake.Set(due.Add(400 * time.Millisecond))
	select {
	case <-term.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("Done still open after a timer fired 400ms late")
	}
	errIs(t, term.Err(), lease.ErrLost)
	if !strings.Contains(term.Err().Error(), "late") || !term.EndedAt().Before(deadline) {
		t.Fatalf("ended at %v with %v; want before the deadline %v, naming the lateness", term.EndedAt(), term.Err(), deadline)
	}
}

// A smaller lateness, below half the margin, is not a reason to step down
// at once, but it brings the end forward by as much: the keeper expects
// its deadline timer to be as late.
func TestLateTimersBringTheEndForward(t *testing.T) {
	const ttl, margin = 3 * time.Second, 300 * time.Millisecond
	const late = 100 * time.Millisecond
	fake, p, term := fakeHolder(t, ttl, margin)
	deadline := term.Deadline()
	p.Blackhole(etcdtest.Both)
	defer p.Heal()
	due, _ := fake.NextDeadline()
	fake.Set(due.Add(late))
	waitFor(t, 10*time.Second, "the keeper to arm its timers again", func() bool {
		return isClosed(term.Done()) || fake.Pending() >= keeperTimers
	})
	if isClosed(term.Done()) {
		t.Fatalf("Done closed after a timer %v late, below half the margin: %v", late, term.Err())
	}
	// Time passes without stalls: the term ends when the clock reaches the
	// deadline less the lateness seen, not at the deadline.
	walk(t, fake, term, deadline)
	select {
	case <-term.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("Done still open at the deadline")
	}
	if got, want := term.EndedAt(), deadline.Add(-late); !got.Equal(want) {
		t.Fatalf("ended at %v, want the deadline less the lateness, %v (deadline %v): %v", got, want, deadline, term.Err())
	}
}
