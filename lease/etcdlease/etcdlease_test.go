package etcdlease_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hakit/hakit/fence"
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
	if err != nil || l != (lease.Leader{ID: "a", Token: ta.Token(), Addr: "a.example:7000"}) || l != ta.Leader() {
		t.Fatalf("Leader = %+v, %v; the term says %+v", l, err, ta.Leader())
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

// TestBadRecordUnderPrefix: a key under the election prefix that no member
// wrote still takes part in the election (it is older than every
// campaign), and reading it gives an error naming the key, never a made-up
// leader.
func TestBadRecordUnderPrefix(t *testing.T) {
	s := etcdtest.Start(t)
	admin := s.Client(t)
	prefix := newPrefix(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	bad := prefix + "intruder"
	put, err := admin.Put(ctx, bad, `{"v":9,"id":"x"}`)
	if err != nil {
		t.Fatal(err)
	}
	a := newMember(t, s, prefix, "a", 2*time.Second)

	_, err = a.e.Leader(ctx)
	if !errors.Is(err, etcdlease.ErrBadRecord) || !strings.Contains(err.Error(), strconv.Quote(bad)) {
		t.Fatalf("Leader with a bad record oldest: %v, want ErrBadRecord naming %q", err, bad)
	}
	octx, ocancel := context.WithCancel(ctx)
	defer ocancel()
	obs := a.e.Observe(octx)
	if l := <-obs; l != (lease.Leader{Token: fence.Token(put.Header.Revision)}) {
		t.Fatalf("Observe's first value %+v, want the bad key's token with no ID", l)
	}

	won := campaignAsync(ctx, a.e, nil)
	waitCampaigning(t, ctx, a, prefix, 2, won)
	if _, err := admin.Delete(ctx, bad); err != nil {
		t.Fatal(err)
	}
	r := <-won
	if r.err != nil {
		t.Fatal(r.err)
	}
	if l := <-obs; l.ID != "a" || l.Token != r.term.Token() {
		t.Fatalf("Observe after the bad key went: %+v, want a with token %d", l, r.term.Token())
	}
}

// TestCloseStopsCampaign: Close ends a waiting Campaign with
// lease.ErrClosed, removes its key, and closes Observe channels.
func TestCloseStopsCampaign(t *testing.T) {
	s := etcdtest.Start(t)
	prefix := newPrefix(t)
	a := newMember(t, s, prefix, "a", 2*time.Second)
	b := newMember(t, s, prefix, "b", 2*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	mustCampaign(t, a.e)
	obs := b.e.Observe(ctx)
	won := campaignAsync(ctx, b.e, nil)
	waitCampaigning(t, ctx, b, prefix, 2, won)
	if err := b.e.Close(); err != nil {
		t.Fatal(err)
	}
	if r := <-won; !errors.Is(r.err, lease.ErrClosed) {
		t.Fatalf("waiting Campaign after Close: %v, want lease.ErrClosed", r.err)
	}
	for range obs {
	}
	resp, err := a.client.Get(ctx, prefix, clientv3WithPrefix()...)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("keys after Close of the waiting member: %v, %v; want only the holder's", resp, err)
	}
	if _, err := b.e.Leader(ctx); !errors.Is(err, lease.ErrClosed) {
		t.Fatalf("Leader after Close: %v", err)
	}
}
