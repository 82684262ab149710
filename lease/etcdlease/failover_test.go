package etcdlease_test

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/hakit/hakit/lease"
	"github.com/hakit/hakit/lease/etcdlease"
	"github.com/hakit/hakit/storage/etcdstore"
	"github.com/hakit/hakit/storage/etcdstore/etcdtest"
)

// The etcd elector's Term is what etcdstore binds writes to.
var _ etcdstore.LeaderKeyHolder = (*etcdlease.Term)(nil)

var trials = flag.Int("etcdlease.trials", 10, "trials of TestCutHolderStepsDownFirst")

// TestCutHolderStepsDownFirst cuts the holder's link at a random point of
// its keepalive cycle and checks, in every trial, that its Done closed
// strictly before the successor's Campaign returned, and that after the
// link heals the old term stays ended and no longer satisfies a write
// bound to it.
func TestCutHolderStepsDownFirst(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d (cut points are random)", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	s := etcdtest.Start(t)
	const ttl = time.Second
	var minMargin time.Duration = -1
	for i := range *trials {
		t.Run(fmt.Sprint("trial", i), func(t *testing.T) {
			m := cutHolderTrial(t, s, ttl, time.Duration(rng.Int64N(int64(ttl/3))))
			if minMargin < 0 || m < minMargin {
				minMargin = m
			}
		})
	}
	t.Logf("smallest margin between the holder's Done and the successor's win: %v", minMargin)
}

// cutHolderTrial runs one trial and returns by how much the holder's Done
// preceded the successor's win.
func cutHolderTrial(t *testing.T, s *etcdtest.Server, ttl, cutDelay time.Duration) time.Duration {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	prefix := newPrefix(t)
	// The widest margin Config allows (TTL/4): the trials run beside
	// other tests on a small machine, and the margin must also cover the
	// holder's scheduling delay (see Config.DriftMargin).
	wide := func(c *etcdlease.Config) { c.DriftMargin = ttl / 4 }
	a := newMember(t, s, prefix, "a", ttl, wide)
	b := newMember(t, s, prefix, "b", ttl, wide)

	ta := mustCampaign(t, a.e)
	won := campaignAsync(ctx, b.e, ta.Done())
	waitCampaigning(t, ctx, b, prefix, 2, won)
	cut := time.NewTimer(cutDelay) // a random point of a's keepalive cycle
	<-cut.C
	a.proxy.Blackhole(etcdtest.Both)
	cutAt := time.Now()

	r := <-won
	if r.err != nil {
		t.Fatalf("successor's Campaign: %v", r.err)
	}
	if !r.prevDone {
		t.Fatalf("successor won at %v while the cut holder's Done was still open (deadline %v)", r.at, ta.Deadline())
	}
	closedAt := ta.EndedAt()
	if !closedAt.Before(r.at) {
		t.Fatalf("holder's Done closed at %v, not before the successor won at %v", closedAt, r.at)
	}
	errIs(t, ta.Err(), lease.ErrLost)
	t.Logf("cut +%v: holder's Done +%v, successor won +%v (margin %v); %v",
		cutDelay, closedAt.Sub(cutAt), r.at.Sub(cutAt), r.at.Sub(closedAt), ta.Err())
	tb := r.term.(*etcdlease.Term)
	if tb.Token() <= ta.Token() {
		t.Fatalf("successor token %d not above %d", tb.Token(), ta.Token())
	}

	// Heal: the old holder reconnects, sees the new leader, and its term
	// stays over; a write bound to the old term fails.
	a.proxy.Heal()
	waitFor(t, 10*time.Second, "the healed holder to see the successor", func() bool {
		rctx, rcancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer rcancel()
		l, err := a.e.Leader(rctx)
		return err == nil && l.ID == "b" && l.Token == tb.Token()
	})
	// A storage write bound to the old term fails, even under a token
	// no successor has used yet; one bound to the new term succeeds.
	data := newPrefix(t)
	_, err := etcdstore.New(a.client, data).Bind(ta.LeaderKey(), ta.CreateRevision()).Put(ctx, ta.Token(), "k", []byte("old"))
	errIs(t, err, lease.ErrLost)
	if _, err := etcdstore.New(b.client, data).BindTerm(tb).Put(ctx, tb.Token(), "k", []byte("new")); err != nil {
		t.Fatalf("write bound to the successor's term: %v", err)
	}
	if !isClosed(ta.Done()) || ta.Err() == nil {
		t.Fatal("old term revived after heal")
	}
	// a may campaign again, but only queues behind b.
	cctx, ccancel := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err = a.e.Campaign(cctx)
	ccancel()
	errIs(t, err, context.DeadlineExceeded)
	return r.at.Sub(closedAt)
}
