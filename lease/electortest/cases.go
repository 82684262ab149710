package electortest

import (
	"context"
	"errors"
	"fmt"

	"github.com/hakit/hakit/lease"
)

// testOneWinner: all members campaign at once; exactly one wins and keeps
// the lease, renewing it, for Failover while the others wait; then each
// winner resigns and exactly one more wins, until everyone has won once.
func testOneWinner(s *suite) {
	obs := s.observe(s.ids[0])
	results := make(chan result, len(s.ids))
	for _, id := range s.ids {
		s.campaign(s.ctx(), id, results)
	}
	r := s.awaitWin(results, "the first of all members to win", s.tm.Failover)
	s.hold(s.tm.Failover)
	s.noResult(results, fmt.Sprintf("member %q held the lease for %v", r.id, s.tm.Failover))
	if closed(r.term.Done()) {
		s.t.Fatalf("member %q term %d ended (%v) while nothing disturbed it: renewals did not keep it", r.id, r.term.Token(), r.term.Err())
	}
	if err := r.term.Err(); err != nil {
		s.t.Fatalf("member %q term %d: Err = %v while Done is open, want nil", r.id, r.term.Token(), err)
	}
	for i := 1; i < len(s.ids); i++ {
		prev := r
		s.resign(prev.id, prev.term)
		r = s.awaitWin(results, fmt.Sprintf("a successor after member %q resigned", prev.id), s.tm.Handover)
		if r.id == prev.id {
			s.t.Fatalf("member %q won twice from one Campaign", r.id)
		}
	}
	s.resign(r.id, r.term)
	obs.check(lease.Leader{}, s.wins())
}

// testCampaignWhileHolding: a second Campaign by the holder fails and
// leaves its Term alone.
func testCampaignWhileHolding(s *suite) {
	a := s.ids[0]
	results := make(chan result, 2)
	s.campaign(s.ctx(), a, results)
	r := s.awaitWin(results, "member "+a+" to win", s.tm.Failover)
	ctx, cancel := context.WithTimeout(s.ctx(), s.tm.Wait)
	defer cancel()
	s.campaign(ctx, a, results)
	again := s.await(results, "a second Campaign by the holder to return", 0)
	if again.err == nil {
		s.t.Fatalf("member %q holds term %d, and a second Campaign returned term %d with no error", a, r.term.Token(), again.term.Token())
	}
	if closed(r.term.Done()) {
		s.t.Fatalf("a second Campaign by member %q ended its term %d: %v", a, r.term.Token(), r.term.Err())
	}
	s.resign(a, r.term)
}

// testResignHandsOver: Resign closes Done before the waiting successor's
// Campaign returns, which it does within Handover with a larger token;
// resigning again is a no-op; the resigned member can win again later.
func testResignHandsOver(s *suite) {
	a, b := s.ids[0], s.ids[1]
	obs := s.observe(s.ids[2])
	results := make(chan result, 4)
	s.campaign(s.ctx(), a, results)
	ra := s.awaitWin(results, "member "+a+" to win", s.tm.Failover)
	s.campaign(s.ctx(), b, results)
	s.hold(s.tm.Settle)
	s.noResult(results, fmt.Sprintf("member %q holds the lease", a))

	start := s.tm.Clock.Now()
	resigned := make(chan error, 1)
	go func() { resigned <- ra.term.Resign(s.ctx()) }()
	rb := s.awaitWin(results, fmt.Sprintf("member %q to win after member %q resigned", b, a), s.tm.Handover)
	if took := rb.at.Sub(start); took > s.tm.Handover {
		s.t.Errorf("member %q won %v after member %q began to resign; want at most Handover %v", b, took, a, s.tm.Handover)
	}
	select {
	case err := <-resigned:
		if err != nil {
			s.t.Fatalf("Resign of member %q term %d: %v", a, ra.term.Token(), err)
		}
	case <-s.timeout():
		s.t.Fatalf("Resign of member %q did not return within %v", a, s.tm.Wait)
	}
	if err := ra.term.Err(); !errors.Is(err, lease.ErrResigned) {
		s.t.Errorf("member %q term %d: Err after Resign = %v, want it to wrap lease.ErrResigned", a, ra.term.Token(), err)
	}
	s.resign(a, ra.term) // a no-op now, and must say nil

	s.campaign(s.ctx(), a, results)
	s.hold(s.tm.Settle)
	s.resign(b, rb.term)
	ra2 := s.awaitWin(results, fmt.Sprintf("member %q to win again after member %q resigned", a, b), s.tm.Handover)
	s.resign(a, ra2.term)
	obs.check(lease.Leader{}, s.wins())
}

// testCloseReleases: Close of a waiting member ends its Campaign with
// lease.ErrClosed and disturbs nobody; Close of the holder resigns and
// hands over; every method after Close fails with lease.ErrClosed; Close
// twice is harmless.
func testCloseReleases(s *suite) {
	a, b, c := s.ids[0], s.ids[1], s.ids[2]
	obs := s.observe(b)
	results := make(chan result, 4)
	s.campaign(s.ctx(), a, results)
	ra := s.awaitWin(results, "member "+a+" to win", s.tm.Failover)
	cResults := make(chan result, 1)
	s.campaign(s.ctx(), c, cResults)
	s.campaign(s.ctx(), b, results)
	s.hold(s.tm.Settle)

	cObs := s.observe(c)
	ec := s.member(c)
	s.wait(fmt.Sprintf("Close of waiting member %q", c), func() {
		if err := ec.Close(); err != nil {
			s.t.Errorf("Close of waiting member %q: %v", c, err)
		}
	})
	rc := s.await(cResults, fmt.Sprintf("the Campaign of member %q to end after its Close", c), 0)
	if !errors.Is(rc.err, lease.ErrClosed) {
		s.t.Fatalf("Campaign of member %q after its Close returned (term %v, err %v), want an error wrapping lease.ErrClosed", c, tokenOf(rc.term), rc.err)
	}
	cObs.waitClosed(fmt.Sprintf("after Close of member %q", c))
	s.wait(fmt.Sprintf("a second Close of member %q", c), func() {
		if err := ec.Close(); err != nil {
			s.t.Errorf("second Close of member %q: %v", c, err)
		}
	})
	if closed(ra.term.Done()) {
		s.t.Fatalf("Close of waiting member %q ended holder %q's term %d: %v", c, a, ra.term.Token(), ra.term.Err())
	}
	checkClosed(s, c, ec)

	start := s.tm.Clock.Now()
	ea := s.member(a)
	s.wait(fmt.Sprintf("Close of holder %q", a), func() {
		if err := ea.Close(); err != nil {
			s.t.Errorf("Close of holder %q: %v", a, err)
		}
	})
	rb := s.awaitWin(results, fmt.Sprintf("member %q to win after holder %q closed", b, a), s.tm.Handover)
	if took := rb.at.Sub(start); took > s.tm.Handover {
		s.t.Errorf("member %q won %v after holder %q began to close; want at most Handover %v", b, took, a, s.tm.Handover)
	}
	if !closed(ra.term.Done()) {
		s.t.Fatalf("member %q term %d: Done open after Close", a, ra.term.Token())
	}
	if err := ra.term.Err(); !errors.Is(err, lease.ErrResigned) {
		s.t.Errorf("member %q term %d: Err after Close = %v, want it to wrap lease.ErrResigned", a, ra.term.Token(), err)
	}
	checkClosed(s, a, ea)
	s.resign(b, rb.term)
	obs.check(lease.Leader{}, s.wins())
}

// checkClosed checks that every method of a closed Elector fails at once
// with lease.ErrClosed.
func checkClosed(s *suite, id string, e lease.Elector) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.ctx(), s.tm.Wait)
	defer cancel()
	s.wait(fmt.Sprintf("methods of closed member %q", id), func() {
		if term, err := e.Campaign(ctx); !errors.Is(err, lease.ErrClosed) {
			s.t.Errorf("Campaign of closed member %q = (term %v, %v), want an error wrapping lease.ErrClosed", id, tokenOf(term), err)
		}
		if l, err := e.Leader(ctx); !errors.Is(err, lease.ErrClosed) {
			s.t.Errorf("Leader of closed member %q = (%v, %v), want an error wrapping lease.ErrClosed", id, fmtLeader(l), err)
		}
		for range e.Observe(ctx) { // must be closed, values or not
		}
	})
}

// testCampaignCancel: a Campaign whose context ends returns its error and
// leaves nothing behind: a later campaigner wins before it, it never
// appears as leader, and the member can campaign and win again.
func testCampaignCancel(s *suite) {
	a, b, c := s.ids[0], s.ids[1], s.ids[2]
	obs := s.observe(a)
	results := make(chan result, 4)
	s.campaign(s.ctx(), a, results)
	ra := s.awaitWin(results, "member "+a+" to win", s.tm.Failover)

	// Already cancelled: fails at once.
	done, cancelDone := context.WithCancel(s.ctx())
	cancelDone()
	bResults := make(chan result, 2)
	s.campaign(done, b, bResults)
	if r := s.await(bResults, "a Campaign with a cancelled context to return", 0); !errors.Is(r.err, context.Canceled) {
		s.t.Fatalf("Campaign of member %q with a cancelled context = (term %v, %v), want an error wrapping context.Canceled", b, tokenOf(r.term), r.err)
	}

	// Cancelled while waiting behind the holder.
	ctx, cancel := context.WithCancel(s.ctx())
	s.campaign(ctx, b, bResults)
	s.hold(s.tm.Settle)
	s.noResult(bResults, fmt.Sprintf("member %q holds the lease", a))
	cancel()
	if r := s.await(bResults, "a cancelled Campaign to return", 0); !errors.Is(r.err, context.Canceled) {
		s.t.Fatalf("Campaign of member %q after cancel = (term %v, %v), want an error wrapping context.Canceled", b, tokenOf(r.term), r.err)
	}

	s.campaign(s.ctx(), c, results)
	s.hold(s.tm.Settle)
	s.resign(a, ra.term)
	rc := s.awaitWin(results, fmt.Sprintf("member %q to win after holder %q resigned (not member %q, whose Campaign was cancelled)", c, a, b), s.tm.Handover)
	for _, id := range []string{a, c} {
		s.eventually("Leader to name the successor", func() error {
			return s.leaderIs(id, lease.Leader{ID: c, Token: rc.term.Token()})
		})
	}

	// Nothing stuck: b can still campaign and win.
	s.campaign(s.ctx(), b, bResults)
	s.hold(s.tm.Settle)
	s.resign(c, rc.term)
	rb := s.awaitWin(bResults, fmt.Sprintf("member %q to win after its earlier Campaign was cancelled", b), s.tm.Handover)
	s.resign(b, rb.term)
	obs.check(lease.Leader{}, s.wins())
}

// testCutOffHolder: a holder cut off from the election sees Done close
// strictly before the successor's Campaign returns (checked at that
// instant), with Err wrapping lease.ErrLost; the successor wins within
// Failover with a larger token; after Heal the old term stays ended and the
// old holder can win again only with a new, larger token.
func testCutOffHolder(s *suite) {
	a, b, c := s.ids[0], s.ids[1], s.ids[2]
	obs := s.observe(c)
	results := make(chan result, 4)
	s.campaign(s.ctx(), a, results)
	ra := s.awaitWin(results, "member "+a+" to win", s.tm.Failover)
	s.campaign(s.ctx(), b, results)
	s.hold(s.tm.Settle)
	s.noResult(results, fmt.Sprintf("member %q holds the lease", a))

	start := s.tm.Clock.Now()
	s.isolate(a)
	// checkWin verifies, the instant b's Campaign returns, that a's Done
	// was already closed.
	rb := s.awaitWin(results, fmt.Sprintf("member %q to take over from cut-off holder %q", b, a), s.tm.Failover)
	if took := rb.at.Sub(start); took > s.tm.Failover {
		s.t.Errorf("member %q took over %v after holder %q was cut off; want at most Failover %v", b, took, a, s.tm.Failover)
	}
	// The old term's deadline must not lie after the takeover: an
	// answer checked against it from a holder that was frozen, and has
	// not seen Done close, would otherwise still say "primary".
	if dl := ra.term.Deadline(); dl.After(rb.at) {
		s.t.Errorf("member %q term %d: Deadline %v is after member %q won at %v", a, ra.term.Token(), dl, b, rb.at)
	}
	lost := ra.term.Err()
	if !errors.Is(lost, lease.ErrLost) {
		s.t.Errorf("member %q term %d: Err after being cut off = %v, want it to wrap lease.ErrLost", a, ra.term.Token(), lost)
	}

	s.heal(a)
	s.eventually("the healed member's Leader to name the successor", func() error {
		return s.leaderIs(a, lease.Leader{ID: b, Token: rb.term.Token()})
	})
	if err := ra.term.Err(); !closed(ra.term.Done()) || !errors.Is(err, lease.ErrLost) {
		s.t.Errorf("member %q term %d after Heal: Done closed %v, Err %v; want it to stay ended with lease.ErrLost", a, ra.term.Token(), closed(ra.term.Done()), err)
	}

	s.campaign(s.ctx(), a, results)
	s.hold(s.tm.Settle)
	s.resign(b, rb.term)
	ra2 := s.awaitWin(results, fmt.Sprintf("healed member %q to win again", a), s.tm.Handover)
	s.resign(a, ra2.term)
	obs.check(lease.Leader{}, s.wins())
}

// testLeader: Leader reports lease.ErrNoLeader with no holder, the holder
// (ID and token, the same address everywhere) once one wins, and
// lease.ErrNoLeader again after it resigns.
func testLeader(s *suite) {
	for _, id := range s.ids {
		if err := s.leaderIs(id, lease.Leader{}); err != nil {
			s.t.Fatalf("before any campaign: %v", err)
		}
	}
	a := s.ids[1]
	results := make(chan result, 1)
	s.campaign(s.ctx(), a, results)
	ra := s.awaitWin(results, "member "+a+" to win", s.tm.Failover)
	want := lease.Leader{ID: a, Token: ra.term.Token()}
	addrs := map[string]string{}
	for _, id := range s.ids {
		s.eventually("Leader to name the holder", func() error { return s.leaderIs(id, want) })
		l, err := s.member(id).Leader(s.ctx())
		if err != nil {
			s.t.Fatalf("Leader of member %q: %v", id, err)
		}
		addrs[id] = l.Addr
	}
	for id, addr := range addrs {
		if addr != addrs[a] {
			s.t.Errorf("member %q reports the holder's address as %q, the holder itself as %q", id, addr, addrs[a])
		}
	}
	s.resign(a, ra.term)
	for _, id := range s.ids {
		s.eventually("Leader to report no leader after the holder resigned", func() error {
			return s.leaderIs(id, lease.Leader{})
		})
	}
}

// testObserve: a fast and a slow reader both see every holder in order,
// with the zero Leader for "no leader"; a new observer starts with the
// current holder; Observe's channel closes when its context ends.
func testObserve(s *suite) {
	a, b, c := s.ids[0], s.ids[1], s.ids[2]
	fast := s.observe(a)
	slowCtx, cancelSlow := context.WithCancel(s.ctx())
	defer cancelSlow()
	slow := s.member(b).Observe(slowCtx) // not read until the end: changes must queue

	results := make(chan result, 8)
	order := []string{a, b, a, c, b}
	var late *observer
	var lateFirst lease.Leader
	for i, id := range order {
		s.campaign(s.ctx(), id, results)
		r := s.awaitWin(results, fmt.Sprintf("member %q to win turn %d", id, i), s.tm.Failover)
		fast.waitLast(lease.Leader{ID: id, Token: r.term.Token()})
		if i == 2 {
			lateFirst = lease.Leader{ID: id, Token: r.term.Token()}
			s.eventually("Leader to name the holder", func() error { return s.leaderIs(c, lateFirst) })
			late = s.observe(c)
		}
		s.resign(id, r.term)
	}
	wins := s.wins()
	fast.check(lease.Leader{}, wins)
	late.check(lateFirst, wins[2:])

	var got []lease.Leader
	s.wait("the slow reader's values", func() {
		for l := range slow {
			got = append(got, l)
			if len(nonZero(got)) == len(wins) && l.IsZero() {
				break
			}
		}
	})
	if nz := nonZero(got); len(got) == 0 || !got[0].IsZero() || !equalLeaders(nz, wins) {
		s.t.Errorf("slow reader of member %q got %v; the terms won were %v, starting from no leader", b, fmtLeaders(got), fmtLeaders(wins))
	}
	cancelSlow()
	s.wait("Observe's channel to close after its context ended", func() {
		for range slow {
		}
	})
	fast.cancel()
	fast.waitClosed("after its context ended")
}

func equalLeaders(a, b []lease.Leader) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !sameLeader(a[i], b[i]) {
			return false
		}
	}
	return true
}

// testTurns: every member campaigns again and again, resigning at once
// each time it wins; every win must find all earlier terms ended, tokens
// must increase, and an observer must see every term in order.
func testTurns(s *suite) {
	const rounds = 5
	obs := s.observe(s.ids[0])
	results := make(chan result, len(s.ids)*rounds)
	errs := make(chan error, len(s.ids))
	for _, id := range s.ids {
		e := s.member(id)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			errs <- turns(s, id, e, rounds, results)
		}()
	}
	for range s.ids {
		select {
		case err := <-errs:
			if err != nil {
				s.t.Fatal(err)
			}
		case <-s.timeout():
			s.t.Fatalf("members did not finish %d rounds each within %v", rounds, s.tm.Wait)
		}
	}
	if n := len(s.wins()); n != len(s.ids)*rounds {
		s.t.Fatalf("%d terms won, want %d", n, len(s.ids)*rounds)
	}
	obs.check(lease.Leader{}, s.wins())
}

func turns(s *suite, id string, e lease.Elector, rounds int, results chan<- result) error {
	for i := range rounds {
		term, err := e.Campaign(s.ctx())
		if err != nil {
			return fmt.Errorf("round %d: Campaign of member %q: %w", i, id, err)
		}
		s.checkWin(id, term, s.tm.Clock.Now())
		if err := term.Resign(s.ctx()); err != nil {
			return fmt.Errorf("round %d: Resign of member %q term %d: %w", i, id, term.Token(), err)
		}
		results <- result{id: id, term: term}
	}
	return nil
}
