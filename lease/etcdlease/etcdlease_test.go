package etcdlease_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hakit/hakit/lease"
	"github.com/hakit/hakit/lease/etcdlease"
	"github.com/hakit/hakit/storage/etcdstore/etcdtest"
)

func TestCampaignResignHandover(t *testing.T) {
	s := etcdtest.Start(t, etcdtest.WithTLS())
	prefix := newPrefix(t)
	a := newMember(t, s, prefix, "a", 2*time.Second)
	b := newMember(t, s, prefix, "b", 2*time.Second)
	ctx := context.Background()

	if _, err := a.e.Leader(ctx); !errors.Is(err, lease.ErrNoLeader) {
		t.Fatalf("Leader before any campaign: %v, want ErrNoLeader", err)
	}
	ta := mustCampaign(t, a.e)
	if ta.Token() == 0 || int64(ta.Token()) != ta.CreateRevision() {
		t.Fatalf("token %d, create revision %d", ta.Token(), ta.CreateRevision())
	}
	l, err := b.e.Leader(ctx)
	if err != nil || l != (lease.Leader{ID: "a", Token: ta.Token(), Addr: "a.example:7000"}) {
		t.Fatalf("Leader = %+v, %v", l, err)
	}
	if _, err := a.e.Campaign(ctx); !errors.Is(err, etcdlease.ErrHolding) {
		t.Fatalf("second Campaign while holding: %v, want ErrHolding", err)
	}

	won := campaignAsync(ctx, b.e, nil)
	waitCampaigning(t, ctx, b, prefix, 2, won)
	select {
	case r := <-won:
		t.Fatalf("b won while a holds: %+v", r)
	default:
	}
	if err := ta.Resign(ctx); err != nil {
		t.Fatalf("Resign: %v", err)
	}
	if !isClosed(ta.Done()) {
		t.Fatal("Done open after Resign")
	}
	errIs(t, ta.Err(), lease.ErrResigned)
	r := <-won
	if r.err != nil {
		t.Fatal(r.err)
	}
	tb := r.term.(*etcdlease.Term)
	if tb.Token() <= ta.Token() {
		t.Fatalf("token %d after %d", tb.Token(), ta.Token())
	}
	if err := ta.Resign(ctx); err != nil {
		t.Fatalf("second Resign: %v", err)
	}
	if ok, err := stillHolds(ctx, a.client, ta); err != nil || ok {
		t.Fatalf("resigned term still holds its key: %v, %v", ok, err)
	}
	// a can campaign again once its term ended, and Close resigns b's.
	won = campaignAsync(ctx, a.e, nil)
	if err := b.e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	errIs(t, tb.Err(), lease.ErrResigned)
	r = <-won
	if r.err != nil || r.term.Token() <= tb.Token() {
		t.Fatalf("a's second campaign: %+v", r)
	}
	if _, err := b.e.Campaign(ctx); !errors.Is(err, lease.ErrClosed) {
		t.Fatalf("Campaign after Close: %v", err)
	}
}
