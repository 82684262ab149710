// Package dns points clients at the active member. Each mechanism (a health
// endpoint that a load balancer polls, exec hooks, RFC 2136 dynamic DNS,
// Route 53, a floating IP) is a Switcher; Multi combines several.
package dns

import (
	"context"

	"github.com/hakit/hakit/fence"
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
