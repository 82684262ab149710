package dns_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hakit/hakit/dns"
	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/lease/clock"
)

// flaky fails its first n calls with err, then succeeds.
type flaky struct {
	n     int32
	err   error
	calls atomic.Int32
}

func (f *flaky) Promote(ctx context.Context, t fence.Token) error { return f.call() }
func (f *flaky) Demote(ctx context.Context, t fence.Token) error  { return f.call() }

func (f *flaky) call() error {
	if f.calls.Add(1) <= f.n {
		return f.err
	}
	return nil
}

// fastPolicy retries without real waits worth mentioning.
func fastPolicy(attempts int) dns.RetryPolicy {
	return dns.RetryPolicy{Attempts: attempts, Initial: time.Microsecond, Max: 10 * time.Microsecond, Multiplier: 2}
}

func TestRetry(t *testing.T) {
	transient := errors.New("connection refused")
	tests := []struct {
		name      string
		failures  int32
		err       error
		attempts  int
		wantCalls int32
		wantIs    []error
	}{
		{"succeeds first time", 0, transient, 5, 1, nil},
		{"transient failures cured", 3, transient, 5, 4, nil},
		{"attempts run out", 10, transient, 3, 3, []error{transient}},
		{"stale never retried", 10, fence.Stale(1, 2), 5, 1, []error{fence.ErrStale}},
		{"wrapped stale never retried", 10, fmt.Errorf("dns: x: %w", fence.Stale(1, 2)), 5, 1, []error{fence.ErrStale}},
		{"permanent never retried", 10, dns.Permanent(transient), 5, 1, []error{transient, dns.ErrPermanent}},
		{"zero token never retried", 10, fence.ErrNoToken, 5, 1, []error{fence.ErrNoToken}},
		{"context error never retried", 10, context.Canceled, 5, 1, []error{context.Canceled}},
	}
	for _, tt := range tests {
		for _, op := range []string{"promote", "demote"} {
			t.Run(tt.name+"/"+op, func(t *testing.T) {
				f := &flaky{n: tt.failures, err: tt.err}
				r := mustRetry(t, f, fastPolicy(tt.attempts))
				var err error
				if op == "promote" {
					err = r.Promote(t.Context(), 1)
				} else {
					err = r.Demote(t.Context(), 1)
				}
				if got := f.calls.Load(); got != tt.wantCalls {
					t.Errorf("calls = %d, want %d", got, tt.wantCalls)
				}
				if tt.wantIs == nil && err != nil {
					t.Fatalf("err = %v, want nil", err)
				}
				for _, target := range tt.wantIs {
					if !errors.Is(err, target) {
						t.Errorf("errors.Is(%v, %v) = false", err, target)
					}
				}
			})
		}
	}
}

func TestRetryBackoffAndContext(t *testing.T) {
	fake := clock.NewFake(time.Unix(0, 0))
	transient := errors.New("timeout talking to server")
	f := &flaky{n: 100, err: transient}
	p := dns.RetryPolicy{Initial: time.Second, Max: 4 * time.Second, Multiplier: 2, Clock: fake}
	r := mustRetry(t, f, p)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Promote(ctx, 1) }()

	// Waits double up to Max: 1s, 2s, 4s, 4s. A wait shorter than the
	// expected one must not release the next attempt.
	for i, wait := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second} {
		wctx, wcancel := context.WithTimeout(t.Context(), 10*time.Second)
		if err := fake.WaitForTimers(wctx, 1); err != nil {
			t.Fatalf("wait %d: no backoff timer: %v", i, err)
		}
		wcancel()
		if next, _ := fake.NextDeadline(); next.Sub(fake.Now()) != wait {
			t.Fatalf("wait %d: backoff = %v, want %v", i, next.Sub(fake.Now()), wait)
		}
		if got := f.calls.Load(); got != int32(i+1) {
			t.Fatalf("wait %d: calls = %d, want %d", i, got, i+1)
		}
		fake.Advance(wait)
	}
	wctx, wcancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer wcancel()
	if err := fake.WaitForTimers(wctx, 1); err != nil {
		t.Fatal(err)
	}
	cancel()
	err := <-done
	if !errors.Is(err, context.Canceled) || !errors.Is(err, transient) {
		t.Fatalf("err = %v, want both context.Canceled and the last error", err)
	}
	if !strings.Contains(err.Error(), "5 attempts") {
		t.Errorf("err = %v, want the attempt count", err)
	}
}

func TestRetryPolicyValidate(t *testing.T) {
	ok := dns.DefaultRetryPolicy()
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		field string
		edit  func(*dns.RetryPolicy)
	}{
		{"Attempts", func(p *dns.RetryPolicy) { p.Attempts = -1 }},
		{"Initial", func(p *dns.RetryPolicy) { p.Initial = 0 }},
		{"Max", func(p *dns.RetryPolicy) { p.Max = p.Initial / 2 }},
		{"Multiplier", func(p *dns.RetryPolicy) { p.Multiplier = 0.5 }},
		{"Jitter", func(p *dns.RetryPolicy) { p.Jitter = 1.5 }},
	}
	for _, tt := range tests {
		p := ok
		tt.edit(&p)
		err := p.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.field) {
			t.Errorf("%s: err = %v, want one naming the field", tt.field, err)
		}
	}
}

// An invalid policy is an error naming every broken field, not a panic.
func TestRetryRefusesInvalidPolicy(t *testing.T) {
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("Retry panicked on an invalid policy: %v", r)
		}
	}()
	s, err := dns.Retry(&flaky{}, dns.RetryPolicy{Attempts: -1, Multiplier: 0.5})
	if s != nil || !errors.Is(err, dns.ErrConfig) {
		t.Fatalf("Retry with an invalid policy = %v, %v; want nil and an error wrapping ErrConfig", s, err)
	}
	for _, field := range []string{"Attempts", "Initial", "Multiplier"} {
		if !strings.Contains(err.Error(), "dns: invalid config: RetryPolicy."+field+": ") {
			t.Errorf("error %q does not name RetryPolicy.%s", err, field)
		}
	}
}

func TestPermanent(t *testing.T) {
	if dns.Permanent(nil) != nil {
		t.Fatal("Permanent(nil) != nil")
	}
	base := errors.New("bad key")
	err := dns.Permanent(base)
	if !errors.Is(err, base) || !errors.Is(err, dns.ErrPermanent) || !dns.IsPermanent(err) {
		t.Fatalf("Permanent(%v) lost its identity: %v", base, err)
	}
	if err.Error() != base.Error() {
		t.Fatalf("message changed: %q", err)
	}
	if dns.IsPermanent(base) {
		t.Fatal("a plain error counts as permanent")
	}
}

// mustRetry is dns.Retry for a policy the test knows to be valid.
func mustRetry(t testing.TB, s dns.Switcher, p dns.RetryPolicy) dns.Switcher {
	t.Helper()
	r, err := dns.Retry(s, p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
