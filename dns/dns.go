// Package dns points clients at the active member. Each mechanism (a health
// endpoint that a load balancer polls, exec hooks, RFC 2136 dynamic DNS,
// Route 53, a floating IP) is a Switcher; Multi combines several.
package dns

import (
	"context"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/lease"
)

// Switcher moves traffic to or away from this member. Both calls carry the
// fencing token of the term they act for; a switcher whose backend can
// store the token refuses a call whose token is older than one it has seen,
// with an error matching fence.ErrStale. Both calls are idempotent.
type Switcher interface {
	// Promote points traffic at this member for the term with token t.
	Promote(ctx context.Context, t fence.Token) error
	// Demote stops this member claiming traffic for the term with token
	// t. It withdraws only what the term with token t put in place.
	Demote(ctx context.Context, t fence.Token) error
}

// TermSwitcher is a Switcher that wants the whole term when it promotes,
// not only its token, so that what it says afterwards can be checked
// against the term at that moment (lease.Valid): Health answers "standby"
// once the term's deadline has passed, even if this process was frozen and
// nobody has demoted it yet. ha.Node promotes a TermSwitcher with
// PromoteTerm; Multi and Retry pass the term on to the switchers in them
// that are TermSwitchers.
type TermSwitcher interface {
	Switcher
	// PromoteTerm is Promote(ctx, term.Token()), keeping term to check
	// later answers against. The term belongs to the caller: the
	// switcher reads it (Token, Done, Deadline) and never resigns it.
	PromoteTerm(ctx context.Context, term lease.Term) error
}

// PromoteFor promotes s for term: with PromoteTerm if s is a TermSwitcher,
// else with Promote and the term's token.
func PromoteFor(ctx context.Context, s Switcher, term lease.Term) error {
	if ts, ok := s.(TermSwitcher); ok {
		return ts.PromoteTerm(ctx, term)
	}
	return s.Promote(ctx, term.Token())
}
