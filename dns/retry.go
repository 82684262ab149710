package dns

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/lease"
	"github.com/hakit/hakit/lease/clock"
)

// ErrConfig is wrapped by every error about a configuration this package
// refuses (ExecConfig, RetryPolicy). Each message reads "dns: invalid
// config: Field: rule". The errors of the switcher subpackages (rfc2136,
// route53, vip) wrap their own ErrConfig, which matches this one too.
var ErrConfig = errors.New("dns: invalid config")

// ErrPermanent marks an error that retrying cannot cure: bad
// configuration, an authentication failure, a conflict with a newer term.
// Retry returns such an error at once. Backends wrap errors with Permanent;
// test for it with errors.Is(err, ErrPermanent) or IsPermanent.
var ErrPermanent = errors.New("dns: permanent error")

// Permanent returns err marked as permanent; errors.Is(result, err) and
// errors.Is(result, ErrPermanent) both hold. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() []error {
	return []error{e.err, ErrPermanent}
}

// IsPermanent reports whether Retry would give up on err at once: err is
// marked with Permanent, or it matches fence.ErrStale or fence.ErrNoToken
// (a stale term never becomes current again), or it is a context error.
func IsPermanent(err error) bool {
	return errors.Is(err, ErrPermanent) ||
		errors.Is(err, fence.ErrStale) ||
		errors.Is(err, fence.ErrNoToken) ||
		errors.Is(err, context.Canceled) ||
		errors.Is(err, context.DeadlineExceeded)
}

// RetryPolicy says how often and how fast Retry tries again. The zero
// value is not useful; start from DefaultRetryPolicy.
type RetryPolicy struct {
	// Attempts is the most calls Retry makes, the first one included;
	// 0 means no limit other than the context.
	Attempts int
	// Initial is the wait after the first failure. It must be positive.
	Initial time.Duration
	// Max caps every wait. It must be at least Initial.
	Max time.Duration
	// Multiplier grows the wait after each failure; it must be at least 1.
	Multiplier float64
	// Jitter spreads each wait uniformly over [w*(1-Jitter), w], so that
	// members retrying against one server do not stay in step. 0 to 1.
	Jitter float64
	// Clock schedules the waits; nil means the real clock.
	Clock clock.Clock
}

// DefaultRetryPolicy returns a policy of at most 5 attempts, waiting
// 200ms, 400ms, 800ms and 1.6s (less up to 20% jitter) between them.
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{Attempts: 5, Initial: 200 * time.Millisecond, Max: 5 * time.Second, Multiplier: 2, Jitter: 0.2}
}

// withDefaults returns p with a nil Clock set to the real clock.
func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.Clock == nil {
		p.Clock = clock.Real()
	}
	return p
}

// Validate reports every field that breaks its rule, joined; each error
// wraps ErrConfig and reads "dns: invalid config: RetryPolicy.Field: rule".
func (p RetryPolicy) Validate() error {
	var errs []error
	bad := func(field, rule string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: RetryPolicy.%s: %s", ErrConfig, field, fmt.Sprintf(rule, args...)))
	}
	if p.Attempts < 0 {
		bad("Attempts", "must not be negative, got %d", p.Attempts)
	}
	if p.Initial <= 0 {
		bad("Initial", "must be positive, got %v", p.Initial)
	}
	if p.Max < p.Initial {
		bad("Max", "must be at least Initial %v, got %v", p.Initial, p.Max)
	}
	if p.Multiplier < 1 {
		bad("Multiplier", "must be at least 1, got %v", p.Multiplier)
	}
	if p.Jitter < 0 || p.Jitter > 1 {
		bad("Jitter", "must be within [0, 1], got %v", p.Jitter)
	}
	return errors.Join(errs...)
}

// Retry returns a Switcher that calls s again, with exponential backoff,
// when a call fails with an error that is not permanent (see IsPermanent),
// until it succeeds, the policy's attempts run out or ctx is done. It never
// retries a stale token. It returns the last error of s, annotated with the
// number of attempts; if ctx ends during a wait, the error wraps both the
// last error of s and ctx.Err(). The result is a TermSwitcher that passes
// a term on to s if s is one.
//
// Retry relies on s being idempotent, as every Switcher must be. An
// invalid p is refused with an error wrapping ErrConfig that names every
// broken field.
func Retry(s Switcher, p RetryPolicy) (Switcher, error) {
	p = p.withDefaults()
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if s == nil {
		return nil, fmt.Errorf("%w: Retry: the switcher is nil", ErrConfig)
	}
	return &retry{s: s, p: p}, nil
}

var _ TermSwitcher = (*retry)(nil)

type retry struct {
	s Switcher
	p RetryPolicy
}

func (r *retry) String() string { return fmt.Sprintf("retry(%s)", name(0, r.s)) }

func (r *retry) Promote(ctx context.Context, t fence.Token) error {
	return r.do(ctx, "promote", t, r.s.Promote)
}

func (r *retry) PromoteTerm(ctx context.Context, term lease.Term) error {
	return r.do(ctx, "promote", term.Token(), func(ctx context.Context, _ fence.Token) error {
		return PromoteFor(ctx, r.s, term)
	})
}

func (r *retry) Demote(ctx context.Context, t fence.Token) error {
	return r.do(ctx, "demote", t, r.s.Demote)
}

func (r *retry) do(ctx context.Context, op string, t fence.Token, call func(context.Context, fence.Token) error) error {
	wait := r.p.Initial
	for attempt := 1; ; attempt++ {
		err := call(ctx, t)
		if err == nil || IsPermanent(err) {
			return err
		}
		if r.p.Attempts > 0 && attempt >= r.p.Attempts {
			return fmt.Errorf("dns: retry: %s with token %d: giving up after %d attempts: %w", op, t, attempt, err)
		}
		d := wait
		if r.p.Jitter > 0 {
			d -= time.Duration(rand.Float64() * r.p.Jitter * float64(d))
		}
		timer := r.p.Clock.NewTimer(d)
		select {
		case <-timer.C():
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("dns: retry: %s with token %d: stopped after %d attempts: %w", op, t, attempt, errors.Join(err, ctx.Err()))
		}
		wait = min(time.Duration(float64(wait)*r.p.Multiplier), r.p.Max)
	}
}
