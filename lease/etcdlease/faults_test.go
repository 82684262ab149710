package etcdlease_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hakit/hakit/lease"
	"github.com/hakit/hakit/lease/etcdlease"
	"github.com/hakit/hakit/storage/etcdstore"
	"github.com/hakit/hakit/storage/etcdstore/etcdtest"
)

// TestShortBlackholeKeepsTerm cuts the holder's link for less than TTL
// minus the drift margin minus a keepalive interval: the keepalives that
// go unanswered must not end the term, and once the link heals a
// keepalive sent after the heal must extend it.
func TestShortBlackholeKeepsTerm(t *testing.T) {
	const ttl = 5 * time.Second
	const outage = time.Second
	s := etcdtest.Start(t)
	prefix := newPrefix(t)
	a := newMember(t, s, prefix, "a", ttl)
	b := newMember(t, s, prefix, "b", ttl)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	ta := mustCampaign(t, a.e)
	won := campaignAsync(ctx, b.e, ta.Done())
	waitCampaigning(t, ctx, b, prefix, 2, won)

	a.proxy.Blackhole(etcdtest.Both)
	cutDeadline := ta.Deadline()
	<-time.After(outage) // the length of the fault, not a wait for an event
	a.proxy.Heal()
	healed := time.Now()
	margin := a.e.Config().DriftMargin

	// Deadline moves past healed+TTL-margin only when a keepalive sent
	// after the heal was answered.
	waitFor(t, ttl, "a keepalive sent after the heal to be answered", func() bool {
		if isClosed(ta.Done()) {
			t.Fatalf("term ended during a %v outage with TTL %v: %v (deadline at the cut %v)", outage, ttl, ta.Err(), cutDeadline)
		}
		return ta.Deadline().After(healed.Add(ttl - margin))
	})
	if err := ta.Err(); err != nil {
		t.Fatalf("term ended: %v", err)
	}
	select {
	case r := <-won:
		t.Fatalf("successor returned while the holder's term survived: err %v", r.err)
	default:
	}
	data := newPrefix(t)
	if _, err := etcdstore.New(a.client, data).Bind(ta.LeaderKey(), ta.CreateRevision()).Put(ctx, ta.Token(), "k", []byte("v")); err != nil {
		t.Fatalf("write bound to the surviving term: %v", err)
	}
	if err := ta.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if r := <-won; r.err != nil || !r.prevDone || r.term.Token() <= ta.Token() {
		t.Fatalf("successor after resign: %+v", r)
	}
}

// TestServerRestart restarts the etcd server under a holder. etcd keeps
// leases across a restart and its new leader extends every lease by the
// full TTL, so whether the term survives depends only on the deadline
// rule: it survives if a keepalive is answered before the holder's
// deadline, and otherwise ends before anyone else can win. Either way at
// most one member holds.
func TestServerRestart(t *testing.T) {
	t.Run("quick", func(t *testing.T) {
		// With a 5 s TTL the deadline is at least 5 s - 500 ms - 5/3 s
		// after the restart begins, which normally leaves the server and
		// the client's reconnection ample time: the term survives. On a
		// starved machine the restart can take longer; then the term must
		// have ended by the deadline rule before the successor won.
		const ttl = 5 * time.Second
		s := etcdtest.Start(t)
		prefix := newPrefix(t)
		a := newMember(t, s, prefix, "a", ttl)
		b := newMember(t, s, prefix, "b", ttl)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		ta := mustCampaign(t, a.e)
		won := campaignAsync(ctx, b.e, ta.Done())
		waitCampaigning(t, ctx, b, prefix, 2, won)

		began := time.Now()
		deadlineBefore := ta.Deadline()
		s.Restart(t)
		restarted := time.Now()
		t.Logf("restart took %v; the holder's deadline was %v after it began", restarted.Sub(began), deadlineBefore.Sub(began))
		margin := a.e.Config().DriftMargin
		survived := false
		waitFor(t, 2*ttl, "a keepalive after the restart to be answered, or the term to end", func() bool {
			survived = ta.Deadline().After(restarted.Add(ttl - margin))
			return survived || isClosed(ta.Done())
		})
		if !survived {
			// Ended: only by its deadline, and before anyone else won.
			t.Logf("the term ended across the restart: %v", ta.Err())
			errIs(t, ta.Err(), lease.ErrLost)
			if !strings.Contains(ta.Err().Error(), "deadline") {
				t.Fatalf("term ended for another reason than its deadline: %v", ta.Err())
			}
			r := <-won
			if r.err != nil || !r.prevDone || !ta.EndedAt().Before(r.at) {
				t.Fatalf("successor: err %v, old Done closed %v, old term ended %v, successor won %v", r.err, r.prevDone, ta.EndedAt(), r.at)
			}
			return
		}
		if err := ta.Err(); err != nil {
			t.Fatalf("term ended after a keepalive extended it: %v", err)
		}
		select {
		case r := <-won:
			t.Fatalf("successor returned while the holder's term survived: err %v", r.err)
		default:
		}
		if l, err := b.e.Leader(ctx); err != nil || l.ID != "a" || l.Token != ta.Token() {
			t.Fatalf("Leader after restart = %+v, %v; want a with token %d", l, err, ta.Token())
		}
		if err := ta.Resign(ctx); err != nil {
			t.Fatal(err)
		}
		if r := <-won; r.err != nil || !r.prevDone || r.term.Token() <= ta.Token() {
			t.Fatalf("successor after resign: %+v", r)
		}
	})

	t.Run("outage past the deadline", func(t *testing.T) {
		// The server stays down until the holder's deadline has passed:
		// the term ends on the holder's clock, and the successor wins
		// only after the server is back and the old lease is gone.
		const ttl = 2 * time.Second
		s := etcdtest.Start(t)
		prefix := newPrefix(t)
		a := newMember(t, s, prefix, "a", ttl)
		b := newMember(t, s, prefix, "b", ttl)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		ta := mustCampaign(t, a.e)
		won := campaignAsync(ctx, b.e, ta.Done())
		waitCampaigning(t, ctx, b, prefix, 2, won)

		s.Stop()
		select {
		case <-ta.Done():
		case <-time.After(2 * ttl):
			t.Fatalf("term still held %v into an etcd outage (deadline %v)", 2*ttl, ta.Deadline())
		}
		errIs(t, ta.Err(), lease.ErrLost)
		s.Restart(t)
		r := <-won
		if r.err != nil || !r.prevDone {
			t.Fatalf("successor after the outage: err %v, previous Done closed %v", r.err, r.prevDone)
		}
		if !ta.EndedAt().Before(r.at) || r.term.Token() <= ta.Token() {
			t.Fatalf("old term ended at %v, successor (token %d, old %d) won at %v", ta.EndedAt(), r.term.Token(), ta.Token(), r.at)
		}
	})
}

// TestLeaderKeyGone ends the term when someone else deletes the leader key
// or revokes its lease, and lets the next campaigner win.
func TestLeaderKeyGone(t *testing.T) {
	s := etcdtest.Start(t)
	admin := s.Client(t)
	tests := []struct {
		name   string
		remove func(ctx context.Context, term *etcdlease.Term) error
	}{
		{"key deleted", func(ctx context.Context, term *etcdlease.Term) error {
			_, err := admin.Delete(ctx, term.LeaderKey())
			return err
		}},
		{"key detached from the lease", func(ctx context.Context, term *etcdlease.Term) error {
			_, err := admin.Put(ctx, term.LeaderKey(), "overwritten")
			if err != nil {
				return err
			}
			// The key now outlives every lease; remove it so that the
			// successor can win.
			select {
			case <-term.Done():
			case <-ctx.Done():
				return ctx.Err()
			}
			_, err = admin.Delete(ctx, term.LeaderKey())
			return err
		}},
		{"lease revoked", func(ctx context.Context, term *etcdlease.Term) error {
			resp, err := admin.Get(ctx, term.LeaderKey())
			if err != nil {
				return err
			}
			_, err = admin.Revoke(ctx, clientv3LeaseID(resp.Kvs[0].Lease))
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := newPrefix(t)
			a := newMember(t, s, prefix, "a", 5*time.Second)
			b := newMember(t, s, prefix, "b", 5*time.Second)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			ta := mustCampaign(t, a.e)
			won := campaignAsync(ctx, b.e, ta.Done())
			waitCampaigning(t, ctx, b, prefix, 2, won)
			if err := tt.remove(ctx, ta); err != nil {
				t.Fatal(err)
			}
			select {
			case <-ta.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("term survived the loss of its key")
			}
			errIs(t, ta.Err(), lease.ErrLost)
			if !strings.Contains(ta.Err().Error(), ta.LeaderKey()) && !strings.Contains(ta.Err().Error(), "lease") {
				t.Errorf("error %q names neither the key nor the lease", ta.Err())
			}
			if r := <-won; r.err != nil || r.term.Token() <= ta.Token() {
				t.Fatalf("successor: %+v", r)
			}
			// a can campaign again: its ended term no longer counts.
			cctx, ccancel := context.WithTimeout(ctx, 100*time.Millisecond)
			defer ccancel()
			if _, err := a.e.Campaign(cctx); !errorsIsDeadline(err) {
				t.Fatalf("Campaign after losing: %v, want it to wait for the successor", err)
			}
		})
	}
}
