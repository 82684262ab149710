package memlease_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hakit/hakit/lease"
	"github.com/hakit/hakit/lease/clock"
	"github.com/hakit/hakit/lease/memlease"
)

func TestTransfer(t *testing.T) {
	f := clock.NewFake(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	el, err := memlease.NewElection(f, memlease.Options{TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a, _ := el.Member("a", "")
	b, _ := el.Member("b", "")
	c, _ := el.Member("c", "")
	ta, err := a.Campaign(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Transfer(ctx, "c"); !errors.Is(err, memlease.ErrNotWaiting) {
		t.Fatalf("transfer to a member not campaigning: %v, want ErrNotWaiting", err)
	}
	if err := b.Transfer(ctx, "a"); !errors.Is(err, memlease.ErrNotHolding) {
		t.Fatalf("transfer by a non-holder: %v, want ErrNotHolding", err)
	}

	// b campaigns first, then c: a transfer to c skips b.
	won := make(chan lease.Term, 2)
	for _, m := range []*memlease.Elector{b, c} {
		go func() {
			tm, err := m.Campaign(ctx)
			if err == nil {
				won <- tm
			}
		}()
		waitFor(t, func() bool { return len(el.Waiting()) > 0 && el.Waiting()[len(el.Waiting())-1] == m.ID() })
	}
	if err := a.Transfer(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ta.Done():
	default:
		t.Fatal("a's term still open after the transfer returned")
	}
	if !errors.Is(ta.Err(), lease.ErrResigned) {
		t.Fatalf("a's term ended with %v, want ErrResigned", ta.Err())
	}
	tc := <-won
	if got := el.Holder(); got.ID != "c" || tc.Token() <= ta.Token() {
		t.Fatalf("after transfer: holder %+v, c's token %d, a's %d", got, tc.Token(), ta.Token())
	}
	if w := el.Waiting(); len(w) != 1 || w[0] != "b" {
		t.Fatalf("waiting after transfer: %v, want [b]", w)
	}

	if err := el.Isolate("b"); err != nil {
		t.Fatal(err)
	}
	if err := c.Transfer(ctx, "b"); !errors.Is(err, memlease.ErrNotWaiting) {
		t.Fatalf("transfer to a cut-off member: %v, want ErrNotWaiting", err)
	}
}

// waitFor polls cond with a real-time deadline.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		<-tick.C
	}
}
