package hatest

import (
	"context"
	"errors"
	"math/rand"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/storage"
	"github.com/hakit/hakit/storage/memstore"
)

// The tests in this file plant a bug in one part of the world and assert
// that the checkers report it within a bounded number of random
// schedules: a checker that cannot fail proves nothing.

// randomSchedule draws a schedule like ScheduleOf, from a math/rand source.
func randomSchedule(rng *rand.Rand, members, maxFaults int) Schedule {
	s := make(Schedule, 1+rng.Intn(maxFaults))
	for i := range s {
		f := Fault{Kind: FaultKind(rng.Intn(int(FaultUnhealthy))), Member: rng.Intn(members),
			At: time.Duration(rng.Intn(8000)) * time.Millisecond, For: time.Duration(1+rng.Intn(4000)) * time.Millisecond}
		if f.Kind == FaultCut {
			f.Resource = []string{"store", "sink"}[rng.Intn(2)]
			f.Dir = []Direction{ToResource, FromResource, Both}[rng.Intn(3)]
		}
		s[i] = f
	}
	return s
}

// mustFind runs up to n random schedules with opts and returns the first
// error check reports; it fails the test if none does.
func mustFind(t *testing.T, opts func() Options, n int, check func(*History) error) error {
	t.Helper()
	rng := rand.New(rand.NewSource(1))
	for i := range n {
		seed := rng.Int63()
		s := randomSchedule(rng, 3, 4)
		h, _ := runSchedule(t, seed, s, opts())
		if err := check(h); err != nil {
			if !errors.Is(err, ErrViolation) {
				t.Fatalf("seed %d schedule %v: error does not wrap ErrViolation: %v", seed, s, err)
			}
			t.Logf("found after %d schedules: seed %d schedule %v: %v", i+1, seed, s, err)
			return err
		}
	}
	t.Fatalf("the planted bug went unnoticed in %d schedules", n)
	return nil
}

func wantGuarantee(t *testing.T, err error, name string) {
	t.Helper()
	if !strings.Contains(err.Error(), name) {
		t.Errorf("violation %q does not name %q", err, name)
	}
}

// ignoreTokens is a store that writes everything under token 1: it admits
// any token, so it fences nothing.
type ignoreTokens struct{ storage.Store }

func (s ignoreTokens) Put(ctx context.Context, _ fence.Token, key string, v []byte) (storage.Version, error) {
	return s.Store.Put(ctx, 1, key, v)
}

func (s ignoreTokens) CompareAndSwap(ctx context.Context, _ fence.Token, key string, old storage.Version, v []byte) (storage.Version, error) {
	return s.Store.CompareAndSwap(ctx, 1, key, old, v)
}

func (s ignoreTokens) Delete(ctx context.Context, _ fence.Token, key string) error {
	return s.Store.Delete(ctx, 1, key)
}

func TestCheckersCatchStoreIgnoringTokens(t *testing.T) {
	err := mustFind(t, func() Options { return Options{Store: ignoreTokens{memstore.New()}} }, 300, CheckTokens)
	wantGuarantee(t, err, "fencing")
}

// laggingStore answers Get with the value before the last write of the
// key, like a replica that serves reads before it has caught up.
type laggingStore struct {
	storage.Store
	mu   sync.Mutex
	prev map[string]storage.Item
}

func (s *laggingStore) Get(ctx context.Context, key string) (storage.Item, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if it, ok := s.prev[key]; ok {
		return it, nil
	}
	return s.Store.Get(ctx, key)
}

func (s *laggingStore) CompareAndSwap(ctx context.Context, t fence.Token, key string, old storage.Version, v []byte) (storage.Version, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, err := s.Store.Get(ctx, key)
	ver, err2 := s.Store.CompareAndSwap(ctx, t, key, old, v)
	if err2 == nil && err == nil {
		s.prev[key] = cur
	}
	return ver, err2
}

func TestCheckersCatchStaleReads(t *testing.T) {
	opts := func() Options {
		return Options{Store: &laggingStore{Store: memstore.New(), prev: map[string]storage.Item{}}}
	}
	err := mustFind(t, opts, 300, CheckLinearizable)
	wantGuarantee(t, err, "linearizability")
	err = mustFind(t, opts, 300, CheckCheckpoints)
	wantGuarantee(t, err, "no lost progress")
}

func TestCheckersCatchLateDone(t *testing.T) {
	err := mustFind(t, func() Options { return Options{lateDone: 3 * time.Second} }, 300, CheckSingleActive)
	wantGuarantee(t, err, "single active")
}

// Clocks that drift by more than the lease's drift margin make a slow
// member notice the end of its term after its lease expired elsewhere.
func TestCheckersCatchDriftBeyondMargin(t *testing.T) {
	err := mustFind(t, func() Options { return Options{MaxDrift: 0.3} }, 300, CheckSingleActive)
	wantGuarantee(t, err, "single active")
}

func TestCheckersCatchEarlyCheckpoint(t *testing.T) {
	err := mustFind(t, func() Options { return Options{checkpointEarly: true} }, 300, CheckCheckpoints)
	wantGuarantee(t, err, "no lost progress")
}

// A sink that neither fences nor checks where a batch starts admits a
// deposed member's batch after its successor's, and applies records twice.
func TestCheckersCatchSinkIgnoringTokens(t *testing.T) {
	opts := func() Options { return Options{sinkIgnoresTokens: true, unconditionalApply: true} }
	err := mustFind(t, opts, 300, CheckTokens)
	wantGuarantee(t, err, "fencing")
	err = mustFind(t, opts, 300, CheckDelivery)
	wantGuarantee(t, err, "exactly once")
}

func TestCheckersCatchNoFailover(t *testing.T) {
	// With a lease TTL far beyond the bound the World computes for the
	// default options, a crashed holder is not replaced in time.
	w, err := NewWorld(1, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Run(time.Second)
	w.Crash(w.Active())
	w.Run(10 * time.Millisecond)
	w.Restart(w.Members()[0])
	w.Run(time.Second)
	h := w.History()
	h.Bound = 500 * time.Millisecond // tighter than TTL: the lease is still held
	err = CheckLiveness(h)
	if !errors.Is(err, ErrViolation) {
		t.Fatalf("CheckLiveness = %v, want a violation", err)
	}
	wantGuarantee(t, err, "liveness")
}
