// Package electortest is the conformance suite for lease.Elector
// implementations. A backend passes it with one call:
//
//	func TestConformance(t *testing.T) {
//		electortest.Run(t, func(t *testing.T) electortest.Cluster {
//			return newTestCluster(t) // three members of one fresh election
//		})
//	}
//
// Each subtest gets a fresh Cluster and checks one part of the lease
// contract:
//
//   - OneWinner: of all members campaigning at once exactly one wins and
//     keeps the lease, renewing it, for Timing.Failover; then each winner
//     resigns and exactly one more wins, until all have won.
//   - CampaignWhileHolding: a second Campaign by the holder fails and
//     leaves its Term alone.
//   - ResignHandsOver: a waiting successor wins within Timing.Handover of
//     Resign, with a larger token; Err wraps lease.ErrResigned; resigning
//     again returns nil.
//   - CloseReleases: Close of a waiting member ends its Campaign with
//     lease.ErrClosed and closes its Observe channels; Close of the holder
//     hands over like Resign; every method of a closed Elector fails with
//     lease.ErrClosed; a second Close returns nil.
//   - CampaignCancel: a cancelled Campaign returns an error wrapping
//     context.Canceled, never wins later, never appears as leader, and does
//     not stop the member from winning afterwards.
//   - CutOffHolder: after Isolate of the holder, a waiting member wins
//     within Timing.Failover, and the holder's Done was closed, with Err
//     wrapping lease.ErrLost, when that Campaign returned, and its
//     Deadline was not after that moment; after Heal the
//     old term stays ended and the old holder wins again only under a new
//     token.
//   - Leader: lease.ErrNoLeader, then the holder's ID and token (and one
//     address) on every member, then lease.ErrNoLeader again.
//   - Observe: a fast and a slow reader both see every term in order, with
//     the zero Leader for "no leader"; a new observer starts with the
//     current holder; the channel closes when ctx ends.
//   - Turns: every member campaigns and resigns repeatedly, at once.
//
// Throughout, each time a Campaign returns the suite checks, at that
// instant, that every earlier Term's Done is closed, that the new token
// is larger than every earlier one and that the new Term's Deadline lies
// ahead.
//
// # Time
//
// The suite waits only on channels, each wait bounded in real time by
// Timing.Wait, and on timers of Timing.Clock. It never advances a clock
// itself. A backend on a clock.Fake must make its fake time pass on its own
// while the suite runs, for example with a goroutine that advances the Fake
// in small steps whenever timers are pending; the durations the suite
// asserts (Timing.Handover, Timing.Failover) are measured on Timing.Clock,
// so they keep their meaning on virtual time.
package electortest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hakit/hakit/lease"
	"github.com/hakit/hakit/lease/clock"
)

// Cluster is one election under test, with its members and the faults the
// suite injects. Run asks for a new Cluster for every subtest; the Cluster
// releases its resources with t.Cleanup (the suite's own cleanup, which
// heals every member it isolated and closes every Elector it got, runs
// before those).
type Cluster interface {
	// Members returns the IDs of the members of the election, at least
	// three; the suite uses up to five. Every member is reachable until
	// the suite isolates it.
	Members() []string
	// Member returns a new Elector for member id, campaigning in this
	// Cluster's one election. The suite calls it at most once per ID and
	// closes the Elector when the subtest ends. Failures call t.Fatal.
	Member(t *testing.T, id string) lease.Elector
	// Isolate cuts member id off from the election, so that it can no
	// longer renew its lease nor reach the other members, until Heal.
	// (etcd: blackhole the member's link to the server; Raft: partition
	// the node from its peers; memlease: Election.Isolate.)
	Isolate(t *testing.T, id string)
	// Heal undoes Isolate.
	Heal(t *testing.T, id string)
	// Timing returns the bounds the suite checks and waits with.
	Timing() Timing
}

// Timing gives the suite the backend's time source and its bounds. Zero
// fields take the defaults named below; a negative duration fails the
// suite with ErrConfig.
type Timing struct {
	// Clock is the clock the backend's leases run on; durations below
	// are measured on it. Default clock.Real().
	Clock clock.Clock
	// Handover bounds, on Clock, the time from Resign or Close of the
	// holder to a waiting successor's Campaign returning. It should be
	// well below the lease TTL, so that a backend that waits for the
	// lease to expire instead of releasing it fails. Default 1s.
	Handover time.Duration
	// Failover bounds, on Clock, the time from Isolate of the holder to a
	// waiting successor's Campaign returning: the TTL or election timeout
	// plus slack. OneWinner also holds a term this long, so it must exceed
	// the TTL for that case to exercise renewals. Default 10s.
	Failover time.Duration
	// Settle is how long, on Clock, the suite lets a request take effect
	// in the election (a campaign being registered) before it relies on
	// it: a few round trips. Default 50ms.
	Settle time.Duration
	// Wait bounds, in real time, every wait of the suite for an event
	// beyond the durations above. A backend on a fake clock must move its
	// time fast enough for Failover to pass within it. Default 30s.
	Wait time.Duration
}

func (tm Timing) withDefaults() Timing {
	if tm.Clock == nil {
		tm.Clock = clock.Real()
	}
	if tm.Handover == 0 {
		tm.Handover = time.Second
	}
	if tm.Failover == 0 {
		tm.Failover = 10 * time.Second
	}
	if tm.Settle == 0 {
		tm.Settle = 50 * time.Millisecond
	}
	if tm.Wait == 0 {
		tm.Wait = 30 * time.Second
	}
	return tm
}

// ErrConfig is wrapped by the error the suite fails with for a Timing
// with a negative duration; the message reads "electortest: invalid
// config: Field: rule", one per broken rule.
var ErrConfig = errors.New("electortest: invalid config")

// validate reports every negative duration of tm, joined.
func (tm Timing) validate() error {
	var errs []error
	for _, f := range []struct {
		name string
		d    time.Duration
	}{{"Handover", tm.Handover}, {"Failover", tm.Failover}, {"Settle", tm.Settle}, {"Wait", tm.Wait}} {
		if f.d < 0 {
			errs = append(errs, fmt.Errorf("%w: Timing.%s: must not be negative, got %v", ErrConfig, f.name, f.d))
		}
	}
	return errors.Join(errs...)
}

// Run runs the conformance suite as subtests of t, one fresh Cluster each
// from newCluster. Subtests run one after another.
func Run(t *testing.T, newCluster func(t *testing.T) Cluster) {
	t.Helper()
	cases := []struct {
		name string
		run  func(*suite)
	}{
		{"OneWinner", testOneWinner},
		{"CampaignWhileHolding", testCampaignWhileHolding},
		{"ResignHandsOver", testResignHandsOver},
		{"CloseReleases", testCloseReleases},
		{"CampaignCancel", testCampaignCancel},
		{"CutOffHolder", testCutOffHolder},
		{"Leader", testLeader},
		{"Observe", testObserve},
		{"Turns", testTurns},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.run(newSuite(t, newCluster))
		})
	}
}

// ctx returns a context that ends with the subtest.
func (s *suite) ctx() context.Context { return s.base }
