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
func TestDeadlineOnFakeClock(t *testing.T) {
	const ttl, margin = 3 * time.Second, 300 * time.Millisecond
	s := etcdtest.Start(t)
	p := etcdtest.NewProxy(t, s)
	start := time.Unix(1_000_000, 0)
	fake := clock.NewFake(start)
	e, err := etcdlease.New(etcdlease.Config{
		Client: p.Client(t), ID: "a", Prefix: newPrefix(t), TTL: ttl, DriftMargin: margin,
		Clock: fake, Logger: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	term := mustCampaign(t, e)
	if got, want := term.Deadline(), start.Add(ttl-margin); !got.Equal(want) {
		t.Fatalf("deadline after the grant %v, want %v", got, want)
	}
	// The keeper's deadline timer and keepalive timer.
	if err := fake.WaitForTimers(ctx, 2); err != nil {
		t.Fatal(err)
	}
	fake.Advance(ttl / 3) // the first keepalive, sent at start+TTL/3
	want := start.Add(ttl/3 + ttl - margin)
	waitFor(t, 10*time.Second, "the answered keepalive to move the deadline", func() bool {
		return term.Deadline().Equal(want)
	})

	p.Blackhole(etcdtest.Both)
	// Walk the clock up to just before the deadline in keepalive-sized
	// steps; the keepalives go out but are never answered.
	for now := fake.Now(); now.Add(ttl / 6).Before(want); now = fake.Now() {
		fake.Advance(ttl / 6)
	}
	fake.Set(want.Add(-time.Nanosecond))
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
