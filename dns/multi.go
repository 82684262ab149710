package dns

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/go-multierror"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/lease"
)

// ErrPartial marks the error of a Multi whose Promote failed part-way. The
// returned error also wraps the failing switcher's error and every error
// met while rolling back, so errors.Is(err, fence.ErrStale) and the like
// still work through it.
var ErrPartial = errors.New("dns: multi: promote failed part-way")

// Multi returns a Switcher that drives every switcher in s as one.
//
// Promote calls s[0], s[1], ... in order and stops at the first error. It
// then rolls back: it demotes, in reverse order and under the same ctx and
// token, the switcher that failed and every one promoted before it, so that
// a failed Promote never leaves traffic pointed half-way at this member.
// The switchers after the failing one are not called at all. A rollback
// that fails (for instance because ctx is already done) is reported in the
// returned error, and the caller should then call Demote again with a live
// context; Demote after a failed Promote is always safe.
//
// Demote calls every switcher in reverse order and attempts each one even
// when an earlier one failed. Errors of both calls are aggregated with
// github.com/hashicorp/go-multierror; each names the switcher's position
// and, if it implements fmt.Stringer, its name. errors.Is and errors.As
// see through the aggregate.
//
// The result is a TermSwitcher: PromoteTerm passes the term on to every
// switcher that is one, and promotes the others with its token.
//
// A call with a done context does nothing and returns ctx.Err().
// Multi adds no fencing of its own: each switcher checks the token as its
// backend allows. Multi with no switchers does nothing and never fails.
func Multi(s ...Switcher) Switcher {
	return multi(append([]Switcher(nil), s...))
}

type multi []Switcher

var _ TermSwitcher = multi(nil)

func (m multi) Promote(ctx context.Context, t fence.Token) error {
	return m.promote(ctx, t, func(s Switcher) error { return s.Promote(ctx, t) })
}

// PromoteTerm is Promote for term, passing the term on to the switchers
// that implement TermSwitcher.
func (m multi) PromoteTerm(ctx context.Context, term lease.Term) error {
	return m.promote(ctx, term.Token(), func(s Switcher) error { return PromoteFor(ctx, s, term) })
}

// promote promotes each switcher with call, in order, and rolls back as
// Multi describes.
func (m multi) promote(ctx context.Context, t fence.Token, call func(Switcher) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for i, s := range m {
		err := call(s)
		if err == nil {
			continue
		}
		merr := &multierror.Error{ErrorFormat: oneLine}
		merr = multierror.Append(merr, ErrPartial,
			fmt.Errorf("dns: multi: promote %s with token %d: %w", name(i, s), t, err))
		for j := i; j >= 0; j-- {
			if derr := m[j].Demote(ctx, t); derr != nil {
				merr = multierror.Append(merr,
					fmt.Errorf("dns: multi: roll back %s with token %d: %w", name(j, m[j]), t, derr))
			}
		}
		return merr
	}
	return nil
}

func (m multi) Demote(ctx context.Context, t fence.Token) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	merr := &multierror.Error{ErrorFormat: oneLine}
	for i := len(m) - 1; i >= 0; i-- {
		if err := m[i].Demote(ctx, t); err != nil {
			merr = multierror.Append(merr,
				fmt.Errorf("dns: multi: demote %s with token %d: %w", name(i, m[i]), t, err))
		}
	}
	return merr.ErrorOrNil()
}

// name identifies a member of a Multi in error messages.
func name(i int, s Switcher) string {
	if n, ok := s.(fmt.Stringer); ok {
		return fmt.Sprintf("switcher %d (%s)", i, n.String())
	}
	return fmt.Sprintf("switcher %d (%T)", i, s)
}

// oneLine formats an aggregate on one line, so that it stays one record in
// a log.
func oneLine(errs []error) string {
	var b strings.Builder
	for i, err := range errs {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(err.Error())
	}
	return b.String()
}
