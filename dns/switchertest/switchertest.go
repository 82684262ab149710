// Package switchertest is the conformance suite for dns.Switcher
// implementations, in the manner of testing/fstest: a backend's test calls
// Run with a Harness that says how to make switchers and what the backend
// can do, and the suite checks the contract of dns.Switcher:
//
//   - Promote and Demote are idempotent;
//   - Demote without a Promote, and Demote after a failed Promote, are safe;
//   - a stale token is refused with fence.ErrStale, by one switcher and,
//     where the backend stores the token (Harness.Fence), across switchers
//     of different members sharing the backend, also after the newer
//     term demoted; a stale call changes nothing;
//   - a done context is honoured: the call fails with the context's error.
//
// Where the harness can observe the backend (Backend.Observe), the suite
// also checks that each call had, or did not have, its effect.
package switchertest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hakit/hakit/dns"
	"github.com/hakit/hakit/fence"
)

// Harness describes the switcher under test.
type Harness struct {
	// New returns a fresh backend, on which nothing is promoted and no
	// token was seen. Required. It registers its own cleanup with t.
	New func(t *testing.T) Backend
	// Fence says where the switcher checks tokens; the zero value is
	// FenceLocal.
	Fence Fence
	// Timeout bounds each call the suite makes; 0 means 30s.
	Timeout time.Duration
}

// Fence is a switcher's capability to refuse stale tokens.
type Fence int

const (
	// FenceLocal: each switcher refuses a token older than the newest it
	// has seen itself (a fence.Guard in the process). The suite checks
	// stale refusal on one switcher.
	FenceLocal Fence = iota
	// FenceShared: the backend stores the token, so switchers of
	// different members sharing one backend refuse each other's stale
	// tokens (RFC 2136, Route 53). The suite checks that too.
	FenceShared
	// FenceNone: the switcher cannot check tokens at all. The suite
	// leaves out the stale-token checks.
	FenceNone
)

// Backend is one instance of the backend under test.
type Backend struct {
	// Switcher returns a switcher acting for member on this backend.
	// Calls with the same member may return the same switcher. Required.
	Switcher func(t *testing.T, member string) dns.Switcher
	// Observe reports whether traffic currently points at a member of
	// this backend, and the token the backend records for it (0 if the
	// backend records none). Nil means the suite checks errors only.
	Observe func(ctx context.Context) (active bool, token fence.Token, err error)
	// Break, if not nil, makes every later Promote of this backend fail
	// (for instance by stopping its server or revoking a credential) and
	// returns a function that undoes it. The suite then checks that a
	// Demote after the healed failure is safe and withdraws the
	// promotion. Without Break, the failed Promote is one made with a
	// done context.
	Break func(t *testing.T) (heal func())
}

// Run runs the suite as subtests of t.
func Run(t *testing.T, h Harness) {
	t.Helper()
	if h.New == nil {
		t.Fatal("switchertest: Harness.New is nil")
	}
	timeout := h.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	s := &suite{h: h, timeout: timeout}
	t.Run("PromoteIdempotent", s.promoteIdempotent)
	t.Run("DemoteIdempotent", s.demoteIdempotent)
	t.Run("DemoteWithoutPromote", s.demoteWithoutPromote)
	t.Run("NewerTermTakesOver", s.newerTermTakesOver)
	if h.Fence != FenceNone {
		t.Run("StaleTokenRefused", s.staleRefused)
	}
	if h.Fence == FenceShared {
		t.Run("StaleTokenRefusedAcrossMembers", s.staleAcrossMembers)
	}
	t.Run("ContextHonoured", s.contextHonoured)
	t.Run("DemoteAfterFailedPromote", s.demoteAfterFailedPromote)
}

type suite struct {
	h       Harness
	timeout time.Duration
}

func (s *suite) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), s.timeout)
	t.Cleanup(cancel)
	return ctx
}

func (s *suite) promote(t *testing.T, sw dns.Switcher, tok fence.Token) {
	t.Helper()
	if err := sw.Promote(s.ctx(t), tok); err != nil {
		t.Fatalf("Promote(%d): %v", tok, err)
	}
}

func (s *suite) demote(t *testing.T, sw dns.Switcher, tok fence.Token) {
	t.Helper()
	if err := sw.Demote(s.ctx(t), tok); err != nil {
		t.Fatalf("Demote(%d): %v", tok, err)
	}
}

// expect checks the observed state, when the backend can be observed.
func (s *suite) expect(t *testing.T, b Backend, active bool, tok fence.Token) {
	t.Helper()
	if b.Observe == nil {
		return
	}
	gotActive, gotTok, err := b.Observe(s.ctx(t))
	if err != nil {
		t.Fatalf("Observe: %v", err)
	}
	if gotActive != active {
		t.Fatalf("Observe: active = %v, want %v", gotActive, active)
	}
	if active && gotTok != 0 && gotTok != tok {
		t.Fatalf("Observe: token = %d, want %d", gotTok, tok)
	}
}

func (s *suite) promoteIdempotent(t *testing.T) {
	b := s.h.New(t)
	sw := b.Switcher(t, "a")
	s.promote(t, sw, 3)
	s.promote(t, sw, 3)
	s.expect(t, b, true, 3)
}

func (s *suite) demoteIdempotent(t *testing.T) {
	b := s.h.New(t)
	sw := b.Switcher(t, "a")
	s.promote(t, sw, 3)
	s.demote(t, sw, 3)
	s.expect(t, b, false, 0)
	s.demote(t, sw, 3)
	s.expect(t, b, false, 0)
	// A later term can promote again after the demote.
	s.promote(t, sw, 4)
	s.expect(t, b, true, 4)
}

func (s *suite) demoteWithoutPromote(t *testing.T) {
	b := s.h.New(t)
	sw := b.Switcher(t, "a")
	s.demote(t, sw, 2)
	s.expect(t, b, false, 0)
	s.promote(t, sw, 3)
	s.expect(t, b, true, 3)
}

func (s *suite) newerTermTakesOver(t *testing.T) {
	b := s.h.New(t)
	sw := b.Switcher(t, "a")
	s.promote(t, sw, 3)
	s.promote(t, sw, 5)
	s.expect(t, b, true, 5)
	s.demote(t, sw, 5)
	s.expect(t, b, false, 0)
}

func (s *suite) staleRefused(t *testing.T) {
	b := s.h.New(t)
	sw := b.Switcher(t, "a")
	s.promote(t, sw, 7)
	if err := sw.Promote(s.ctx(t), 6); !errors.Is(err, fence.ErrStale) {
		t.Fatalf("Promote(6) after Promote(7): err = %v, want fence.ErrStale", err)
	}
	s.expect(t, b, true, 7)
	if err := sw.Demote(s.ctx(t), 6); !errors.Is(err, fence.ErrStale) {
		t.Fatalf("Demote(6) after Promote(7): err = %v, want fence.ErrStale", err)
	}
	s.expect(t, b, true, 7)
	// Demoting does not make the switcher forget the newest token.
	s.demote(t, sw, 7)
	if err := sw.Promote(s.ctx(t), 6); !errors.Is(err, fence.ErrStale) {
		t.Fatalf("Promote(6) after Promote(7) and Demote(7): err = %v, want fence.ErrStale", err)
	}
	s.expect(t, b, false, 0)
}

func (s *suite) staleAcrossMembers(t *testing.T) {
	b := s.h.New(t)
	old, cur := b.Switcher(t, "old"), b.Switcher(t, "new")
	s.promote(t, old, 4)
	s.expect(t, b, true, 4)
	s.promote(t, cur, 5)
	s.expect(t, b, true, 5)
	// The old member wakes up late and tries to take traffic back.
	if err := old.Promote(s.ctx(t), 4); !errors.Is(err, fence.ErrStale) {
		t.Fatalf("old member Promote(4) after new member Promote(5): err = %v, want fence.ErrStale", err)
	}
	s.expect(t, b, true, 5)
	// Its Demote withdraws nothing of the newer term: it either succeeds
	// as a no-op or is refused as stale.
	if err := old.Demote(s.ctx(t), 4); err != nil && !errors.Is(err, fence.ErrStale) {
		t.Fatalf("old member Demote(4): err = %v, want nil or fence.ErrStale", err)
	}
	s.expect(t, b, true, 5)
	// A member that never saw token 5 still cannot promote with token 3.
	if err := b.Switcher(t, "third").Promote(s.ctx(t), 3); !errors.Is(err, fence.ErrStale) {
		t.Fatalf("third member Promote(3): err = %v, want fence.ErrStale", err)
	}
	s.demote(t, cur, 5)
	s.expect(t, b, false, 0)
	// The backend remembers token 5 after its demote: the old member
	// cannot take the idle record either.
	if err := old.Promote(s.ctx(t), 4); !errors.Is(err, fence.ErrStale) {
		t.Fatalf("old member Promote(4) after new member Promote(5) and Demote(5): err = %v, want fence.ErrStale", err)
	}
	s.expect(t, b, false, 0)
}

func (s *suite) contextHonoured(t *testing.T) {
	b := s.h.New(t)
	sw := b.Switcher(t, "a")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := sw.Promote(ctx, 3); !errors.Is(err, context.Canceled) {
		t.Fatalf("Promote with a cancelled context: err = %v, want context.Canceled", err)
	}
	s.expect(t, b, false, 0)
	s.promote(t, sw, 3)
	dctx, dcancel := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
	defer dcancel()
	if err := sw.Demote(dctx, 3); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Demote with an expired context: err = %v, want context.DeadlineExceeded", err)
	}
	s.expect(t, b, true, 3)
	s.demote(t, sw, 3)
	s.expect(t, b, false, 0)
}

func (s *suite) demoteAfterFailedPromote(t *testing.T) {
	b := s.h.New(t)
	sw := b.Switcher(t, "a")
	if b.Break != nil {
		heal := b.Break(t)
		if err := sw.Promote(s.ctx(t), 3); err == nil {
			heal()
			t.Fatal("Promote(3) on a broken backend succeeded")
		}
		heal()
	} else {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if err := sw.Promote(ctx, 3); err == nil {
			t.Fatal("Promote(3) with a cancelled context succeeded")
		}
	}
	s.demote(t, sw, 3)
	s.expect(t, b, false, 0)
	s.promote(t, sw, 4)
	s.expect(t, b, true, 4)
	s.demote(t, sw, 4)
	s.expect(t, b, false, 0)
}
