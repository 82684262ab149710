package electortest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/lease"
)

// suite is the state of one subtest: its cluster, the Electors it made,
// and the terms won so far.
type suite struct {
	t    *testing.T
	c    Cluster
	tm   Timing
	ids  []string
	base context.Context

	mu       sync.Mutex
	electors map[string]lease.Elector
	isolated map[string]bool
	won      []win          // in the order Campaign returned
	wg       sync.WaitGroup // campaign and observer goroutines
}

// win is one Campaign that returned a Term.
type win struct {
	id   string
	term lease.Term
	at   time.Time // on Timing.Clock, right after Campaign returned
}

func newSuite(t *testing.T, newCluster func(*testing.T) Cluster) *suite {
	t.Helper()
	c := newCluster(t)
	ids := c.Members()
	if len(ids) < 3 {
		t.Fatalf("electortest: Cluster.Members returned %d members %q; the suite needs at least 3", len(ids), ids)
	}
	if len(ids) > 5 {
		ids = ids[:5]
	}
	tm := c.Timing().withDefaults()
	if err := tm.validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &suite{
		t: t, c: c, tm: tm, ids: ids, base: ctx,
		electors: map[string]lease.Elector{}, isolated: map[string]bool{},
	}
	t.Cleanup(func() {
		cancel()
		s.wait("campaign and observer goroutines to end", func() { s.wg.Wait() })
		s.mu.Lock()
		isolated, electors := s.isolated, s.electors
		s.mu.Unlock()
		for id := range isolated {
			c.Heal(t, id)
		}
		for id, e := range electors {
			s.wait(fmt.Sprintf("Close of member %q", id), func() {
				if err := e.Close(); err != nil {
					t.Errorf("Close of member %q at cleanup: %v", id, err)
				}
			})
		}
	})
	return s
}

// wait runs f and fails the test if it takes longer than Timing.Wait.
func (s *suite) wait(what string, f func()) {
	s.t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(s.tm.Wait):
		s.t.Fatalf("timed out after %v waiting for %s", s.tm.Wait, what)
	}
}

// member returns the Elector of member id, made on first use.
func (s *suite) member(id string) lease.Elector {
	s.t.Helper()
	s.mu.Lock()
	e, ok := s.electors[id]
	s.mu.Unlock()
	if ok {
		return e
	}
	e = s.c.Member(s.t, id)
	s.mu.Lock()
	s.electors[id] = e
	s.mu.Unlock()
	return e
}

func (s *suite) isolate(id string) {
	s.t.Helper()
	s.c.Isolate(s.t, id)
	s.mu.Lock()
	s.isolated[id] = true
	s.mu.Unlock()
}

func (s *suite) heal(id string) {
	s.t.Helper()
	s.c.Heal(s.t, id)
	s.mu.Lock()
	delete(s.isolated, id)
	s.mu.Unlock()
}

// result is what one Campaign returned.
type result struct {
	id   string
	term lease.Term
	err  error
	at   time.Time // on Timing.Clock
}

// campaign starts member id's Campaign under ctx and sends its result on
// out, which must have room. A Term won is checked against every earlier
// one at the instant Campaign returns (see won).
func (s *suite) campaign(ctx context.Context, id string, out chan<- result) {
	s.t.Helper()
	e := s.member(id)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		term, err := e.Campaign(ctx)
		at := s.tm.Clock.Now()
		if err == nil {
			s.checkWin(id, term, at)
		}
		out <- result{id: id, term: term, err: err, at: at}
	}()
}

// checkWin records a won Term, checking that every earlier Term's Done was
// already closed and that its token is larger than every earlier one.
func (s *suite) checkWin(id string, term lease.Term, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if term == nil {
		s.t.Errorf("Campaign of member %q returned a nil Term and no error", id)
		return
	}
	for _, w := range s.won {
		if !closed(w.term.Done()) {
			s.t.Errorf("Campaign of member %q returned term %d while member %q's term %d was still open (its Done not closed)",
				id, term.Token(), w.id, w.term.Token())
		}
	}
	if n := len(s.won); n > 0 && term.Token() <= s.won[n-1].term.Token() {
		last := s.won[n-1]
		s.t.Errorf("member %q won token %d, not larger than member %q's earlier token %d",
			id, term.Token(), last.id, last.term.Token())
	}
	if term.Token() == 0 {
		s.t.Errorf("member %q won the zero token, which belongs to no term", id)
	}
	if d := term.Deadline(); !d.After(at) {
		s.t.Errorf("member %q term %d: Deadline %v is not after the win at %v: a new term must be trusted for a while",
			id, term.Token(), d, at)
	}
	s.won = append(s.won, win{id: id, term: term, at: at})
}

// wins returns the terms won so far as Leaders, in order.
func (s *suite) wins() []lease.Leader {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ls []lease.Leader
	for _, w := range s.won {
		ls = append(ls, lease.Leader{ID: w.id, Token: w.term.Token()})
	}
	return ls
}

// await returns the next result from ch, failing after Timing.Wait (plus
// extra, on the real clock).
func (s *suite) await(ch <-chan result, what string, extra time.Duration) result {
	s.t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(s.tm.Wait + extra):
		s.t.Fatalf("timed out after %v waiting for %s", s.tm.Wait+extra, what)
		return result{}
	}
}

// awaitWin is await for a Campaign that must succeed.
func (s *suite) awaitWin(ch <-chan result, what string, extra time.Duration) result {
	s.t.Helper()
	r := s.await(ch, what, extra)
	if r.err != nil {
		s.t.Fatalf("%s: Campaign of member %q failed: %v", what, r.id, r.err)
	}
	return r
}

// noResult fails if ch holds a result now.
func (s *suite) noResult(ch <-chan result, why string) {
	s.t.Helper()
	select {
	case r := <-ch:
		s.t.Fatalf("%s, but Campaign of member %q returned (term %v, err %v)", why, r.id, tokenOf(r.term), r.err)
	default:
	}
}

// hold lets d pass on Timing.Clock.
func (s *suite) hold(d time.Duration) {
	s.t.Helper()
	timer := s.tm.Clock.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C():
	case <-time.After(s.tm.Wait + d):
		s.t.Fatalf("timed out after %v waiting for %v to pass on the cluster's clock", s.tm.Wait+d, d)
	}
}

// resign resigns term and checks what the contract says about it.
func (s *suite) resign(id string, term lease.Term) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.ctx(), s.tm.Wait)
	defer cancel()
	if err := term.Resign(ctx); err != nil {
		s.t.Fatalf("Resign of member %q term %d: %v", id, term.Token(), err)
	}
	if !closed(term.Done()) {
		s.t.Fatalf("member %q term %d: Done not closed after Resign returned", id, term.Token())
	}
	if err := term.Err(); !errors.Is(err, lease.ErrResigned) {
		s.t.Fatalf("member %q term %d: Err after Resign = %v, want it to wrap lease.ErrResigned", id, term.Token(), err)
	}
}

// eventually polls f until it returns nil, failing with its last error
// after Timing.Wait.
func (s *suite) eventually(what string, f func() error) {
	s.t.Helper()
	deadline := time.Now().Add(s.tm.Wait)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("after %v, %s: %v", s.tm.Wait, what, err)
		}
		<-tick.C
	}
}

// leaderIs reports whether member id's Leader names want (ID and token),
// or, for the zero want, fails with lease.ErrNoLeader.
func (s *suite) leaderIs(id string, want lease.Leader) error {
	ctx, cancel := context.WithTimeout(s.ctx(), s.tm.Wait)
	defer cancel()
	got, err := s.member(id).Leader(ctx)
	if want.IsZero() {
		if !errors.Is(err, lease.ErrNoLeader) {
			return fmt.Errorf("member %q: Leader = %+v, %v; want an error wrapping lease.ErrNoLeader", id, got, err)
		}
		return nil
	}
	if err != nil || got.ID != want.ID || got.Token != want.Token {
		return fmt.Errorf("member %q: Leader = %+v, %v; want member %q with token %d", id, got, err, want.ID, want.Token)
	}
	return nil
}

// observer collects what one Observe channel delivers.
type observer struct {
	s      *suite
	id     string
	cancel context.CancelFunc

	mu      sync.Mutex
	got     []lease.Leader
	ended   bool
	changed chan struct{}
}

// observe starts Observe on member id and collects its values. It returns
// once the first value has arrived.
func (s *suite) observe(id string) *observer {
	s.t.Helper()
	ctx, cancel := context.WithCancel(s.ctx())
	ch := s.member(id).Observe(ctx)
	o := &observer{s: s, id: id, cancel: cancel, changed: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for l := range ch {
			o.mu.Lock()
			o.got = append(o.got, l)
			close(o.changed)
			o.changed = make(chan struct{})
			o.mu.Unlock()
		}
		o.mu.Lock()
		o.ended = true
		close(o.changed)
		o.changed = make(chan struct{})
		o.mu.Unlock()
	}()
	// Observe delivers the current holder first; wait for it, so that
	// what the test does next comes after it.
	o.waitFor("its first value", func(got []lease.Leader, _ bool) bool { return len(got) > 0 })
	return o
}

// waitFor waits until cond holds for the values seen so far.
func (o *observer) waitFor(what string, cond func(got []lease.Leader, ended bool) bool) []lease.Leader {
	o.s.t.Helper()
	timeout := time.After(o.s.tm.Wait)
	for {
		o.mu.Lock()
		got, ended, ch := slices.Clone(o.got), o.ended, o.changed
		o.mu.Unlock()
		if cond(got, ended) {
			return got
		}
		if ended {
			o.s.t.Fatalf("Observe of member %q closed before %s; it delivered %v", o.id, what, fmtLeaders(got))
		}
		select {
		case <-ch:
		case <-timeout:
			o.s.t.Fatalf("after %v, Observe of member %q has not delivered %s; it delivered %v", o.s.tm.Wait, o.id, what, fmtLeaders(got))
		}
	}
}

// waitLast waits until the newest value observed is want (by ID and token).
func (o *observer) waitLast(want lease.Leader) []lease.Leader {
	o.s.t.Helper()
	return o.waitFor(fmt.Sprintf("leader %v", fmtLeader(want)), func(got []lease.Leader, _ bool) bool {
		return len(got) > 0 && sameLeader(got[len(got)-1], want)
	})
}

// waitClosed waits until the Observe channel is closed.
func (o *observer) waitClosed(why string) {
	o.s.t.Helper()
	o.waitFor("closing its channel "+why, func(_ []lease.Leader, ended bool) bool { return ended })
}

// check compares everything observed with want, the terms won while the
// observer ran, in order: every value must differ from the one before, the
// values other than the zero Leader must be exactly want, the first value
// must be first (the holder when Observe was called) and the last must be
// the zero Leader.
func (o *observer) check(first lease.Leader, want []lease.Leader) {
	o.s.t.Helper()
	got := o.waitFor("the zero Leader after the last term", func(got []lease.Leader, _ bool) bool {
		return len(got) > 0 && got[len(got)-1].IsZero() && len(nonZero(got)) >= len(want)
	})
	if !sameLeader(got[0], first) {
		o.s.t.Errorf("Observe of member %q: first value %v, want the holder at the time of the call, %v", o.id, fmtLeader(got[0]), fmtLeader(first))
	}
	for i := 1; i < len(got); i++ {
		if got[i] == got[i-1] {
			o.s.t.Errorf("Observe of member %q delivered %v twice in a row (values %d and %d): not a change", o.id, fmtLeader(got[i]), i-1, i)
		}
	}
	if nz := nonZero(got); !slices.EqualFunc(nz, want, sameLeader) {
		o.s.t.Errorf("Observe of member %q delivered leaders %v (all values: %v); the terms won were %v",
			o.id, fmtLeaders(nz), fmtLeaders(got), fmtLeaders(want))
	}
	addrs := map[string]string{}
	for _, l := range got {
		if a, ok := addrs[l.ID]; ok && a != l.Addr {
			o.s.t.Errorf("Observe of member %q: member %q advertised address %q and later %q", o.id, l.ID, a, l.Addr)
		}
		addrs[l.ID] = l.Addr
	}
}

func nonZero(ls []lease.Leader) []lease.Leader {
	var out []lease.Leader
	for _, l := range ls {
		if !l.IsZero() {
			out = append(out, l)
		}
	}
	return out
}

func sameLeader(a, b lease.Leader) bool { return a.ID == b.ID && a.Token == b.Token }

func fmtLeader(l lease.Leader) string {
	if l.IsZero() {
		return "(none)"
	}
	return fmt.Sprintf("%s@%d", l.ID, l.Token)
}

func fmtLeaders(ls []lease.Leader) string {
	parts := make([]string, len(ls))
	for i, l := range ls {
		parts[i] = fmtLeader(l)
	}
	return fmt.Sprint(parts)
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func tokenOf(t lease.Term) fence.Token {
	if t == nil {
		return 0
	}
	return t.Token()
}

// timeout returns a channel that fires after Timing.Wait.
func (s *suite) timeout() <-chan time.Time { return time.After(s.tm.Wait) }
