package storage_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/storage"
	"github.com/hakit/hakit/storage/memstore"
	"github.com/hakit/hakit/storage/storagetest"
)

func TestFencedWithFenceKey(t *testing.T) {
	storagetest.TestStore(t, func(t *testing.T) storage.Store {
		return storage.Fenced(memstore.NewBackend(), storage.WithFenceKey("custom/fence"))
	})
}

// roundRobin spreads calls over several Fenced stores on one backend, as
// several processes sharing a storage system would, so the suite runs
// against stores whose cached fence records are out of date.
type roundRobin struct {
	stores []storage.Store
	next   atomic.Uint64
}

func (r *roundRobin) pick() storage.Store {
	return r.stores[r.next.Add(1)%uint64(len(r.stores))]
}

func (r *roundRobin) Get(ctx context.Context, key string) (storage.Item, error) {
	return r.pick().Get(ctx, key)
}

func (r *roundRobin) Put(ctx context.Context, t fence.Token, key string, v []byte) (storage.Version, error) {
	return r.pick().Put(ctx, t, key, v)
}

func (r *roundRobin) CompareAndSwap(ctx context.Context, t fence.Token, key string, old storage.Version, v []byte) (storage.Version, error) {
	return r.pick().CompareAndSwap(ctx, t, key, old, v)
}

func (r *roundRobin) Delete(ctx context.Context, t fence.Token, key string) error {
	return r.pick().Delete(ctx, t, key)
}

func TestFencedSharedBackend(t *testing.T) {
	storagetest.TestStore(t, func(t *testing.T) storage.Store {
		b := memstore.NewBackend()
		return &roundRobin{stores: []storage.Store{storage.Fenced(b), storage.Fenced(b), storage.Fenced(b)}}
	})
}

// counting counts a backend's calls and can inject errors.
type counting struct {
	storage.Backend
	gets, commits atomic.Int64
	commitErr     error
}

func (c *counting) Get(ctx context.Context, key string) (storage.Item, error) {
	c.gets.Add(1)
	return c.Backend.Get(ctx, key)
}

func (c *counting) Commit(ctx context.Context, conds []storage.Cond, ops []storage.Op) (storage.Version, error) {
	c.commits.Add(1)
	if c.commitErr != nil {
		return 0, c.commitErr
	}
	return c.Backend.Commit(ctx, conds, ops)
}

func (c *counting) calls() (gets, commits int64) { return c.gets.Load(), c.commits.Load() }

func TestFencedSteadyStateIsOneCommit(t *testing.T) {
	ctx := t.Context()
	b := &counting{Backend: memstore.NewBackend()}
	s := storage.Fenced(b)
	if _, err := s.Put(ctx, 3, "k", []byte("first")); err != nil {
		t.Fatal(err)
	}
	if g, c := b.calls(); g != 1 || c != 1 {
		t.Fatalf("first write: %d gets and %d commits, want 1 and 1", g, c)
	}
	for i := range 10 {
		v, err := s.Put(ctx, 3, "k", []byte("again"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.CompareAndSwap(ctx, 3, "k", v, []byte("swapped")); err != nil {
			t.Fatal(err)
		}
		if g, c := b.calls(); g != 1 || c != int64(3+2*i) {
			t.Fatalf("after %d steady writes: %d gets and %d commits, want 1 and %d", 2*i+2, g, c, 3+2*i)
		}
	}
	// A new term is one commit too: the fence rides with the write.
	if _, err := s.Put(ctx, 4, "k", []byte("new term")); err != nil {
		t.Fatal(err)
	}
	if g, c := b.calls(); g != 1 || c != 22 {
		t.Fatalf("after the new term's write: %d gets and %d commits, want 1 and 22", g, c)
	}
	// A stale token known from the cache costs no round trip.
	if _, err := s.Put(ctx, 3, "k", []byte("stale")); !errors.Is(err, fence.ErrStale) {
		t.Fatalf("Put(token 3) after token 4: %v", err)
	}
	if g, c := b.calls(); g != 1 || c != 22 {
		t.Fatalf("after the stale write: %d gets and %d commits, want 1 and 22", g, c)
	}
}

func TestFencedOtherWriterRaisedFence(t *testing.T) {
	ctx := t.Context()
	b := memstore.NewBackend()
	old, successor := storage.Fenced(b), storage.Fenced(b)
	v, err := old.Put(ctx, 5, "ckpt", []byte("old"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := successor.Put(ctx, 6, "other", []byte("new term")); err != nil {
		t.Fatal(err)
	}
	// The old writer's cache still says 5; the fence record's version
	// condition catches it anyway, on every kind of write.
	if _, err := old.Put(ctx, 5, "ckpt", []byte("lost")); !errors.Is(err, fence.ErrStale) {
		t.Fatalf("Put(token 5) after token 6 through another Store: %v", err)
	}
	old2 := storage.Fenced(b)
	if _, err := old2.Put(ctx, 5, "warm", []byte("x")); !errors.Is(err, fence.ErrStale) {
		t.Fatalf("Put(token 5) through a fresh Store after token 6: %v", err)
	}
	old3 := storage.Fenced(b)
	if _, err := old3.Put(ctx, 6, "warm", []byte("x")); err != nil { // warm its cache at 6
		t.Fatal(err)
	}
	if _, err := successor.Put(ctx, 7, "other", []byte("newer")); err != nil {
		t.Fatal(err)
	}
	if _, err := old3.CompareAndSwap(ctx, 6, "ckpt", v, []byte("lost")); !errors.Is(err, fence.ErrStale) {
		t.Fatalf("CompareAndSwap(token 6) at the right version after token 7 elsewhere: %v", err)
	}
	if err := old3.Delete(ctx, 6, "ckpt"); !errors.Is(err, fence.ErrStale) {
		t.Fatalf("Delete(token 6) after token 7 elsewhere: %v", err)
	}
	it, err := successor.Get(ctx, "ckpt")
	if err != nil || string(it.Value) != "old" || it.Version != v {
		t.Fatalf("Get(ckpt) = %q, %d, %v; want the untouched %q at %d", it.Value, it.Version, err, "old", v)
	}
}

func TestFencedCorruptFenceRecord(t *testing.T) {
	good := func() []byte {
		b := memstore.NewBackend()
		if _, err := storage.Fenced(b).Put(t.Context(), 9, "k", nil); err != nil {
			t.Fatal(err)
		}
		it, err := b.Get(t.Context(), storage.DefaultFenceKey)
		if err != nil {
			t.Fatal(err)
		}
		return it.Value
	}()
	flip := func(i int) []byte {
		b := append([]byte{}, good...)
		b[i] ^= 0x40
		return b
	}
	cases := map[string][]byte{
		"empty":          {},
		"truncated":      good[:len(good)-1],
		"extended":       append(append([]byte{}, good...), 0),
		"magic":          flip(0),
		"format version": flip(3),
		"token byte":     flip(11),
		"checksum byte":  flip(len(good) - 1),
		"text":           []byte("9"),
	}
	for name, rec := range cases {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			b := memstore.NewBackend()
			if _, err := b.Commit(ctx, nil, []storage.Op{{Key: storage.DefaultFenceKey, Value: rec}}); err != nil {
				t.Fatal(err)
			}
			s := storage.Fenced(b)
			// Token 10 is above the intact record's 9: only a store that
			// ignored the damage could accept it, as could one that read
			// the damaged record as "no fence".
			_, err := s.Put(ctx, 10, "k", []byte("x"))
			if !errors.Is(err, storage.ErrCorrupt) || !strings.Contains(err.Error(), storage.DefaultFenceKey) {
				t.Fatalf("Put over a fence record with a damaged %s: %v; want an error matching storage.ErrCorrupt naming %q", name, err, storage.DefaultFenceKey)
			}
			if _, err := b.Get(ctx, "k"); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("the write went through: %v", err)
			}
		})
	}
}

func TestFencedSeparateFenceKeys(t *testing.T) {
	ctx := t.Context()
	b := memstore.NewBackend()
	a, c := storage.Fenced(b, storage.WithFenceKey("app-a/fence")), storage.Fenced(b, storage.WithFenceKey("app-c/fence"))
	if _, err := a.Put(ctx, 9, "a/x", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, 2, "c/x", nil); err != nil {
		t.Fatalf("a different fence key's token 9 made token 2 stale: %v", err)
	}
	for _, key := range []string{"app-a/fence"} {
		if _, err := a.Get(ctx, key); !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("Get of the reserved fence key: %v", err)
		}
		if _, err := a.Put(ctx, 9, key, nil); !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("Put of the reserved fence key: %v", err)
		}
		if _, err := a.CompareAndSwap(ctx, 9, key, 0, nil); !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("CompareAndSwap of the reserved fence key: %v", err)
		}
		if err := a.Delete(ctx, 9, key); !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("Delete of the reserved fence key: %v", err)
		}
	}
}

func TestFencedBackendErrors(t *testing.T) {
	ctx := t.Context()
	boom := errors.New("disk on fire")
	b := &counting{Backend: memstore.NewBackend(), commitErr: boom}
	s := storage.Fenced(b)
	if _, err := s.Put(ctx, 1, "k", nil); !errors.Is(err, boom) {
		t.Fatalf("Put with a failing backend: %v", err)
	}
	if _, c := b.calls(); c != 1 {
		t.Fatalf("a non-conflict error was retried: %d commits", c)
	}
	// A backend that reports a conflict no condition explains must not
	// make Fenced spin.
	b = &counting{Backend: memstore.NewBackend(), commitErr: storage.ErrConflict}
	s = storage.Fenced(b)
	_, err := s.Put(ctx, 1, "k", nil)
	if !errors.Is(err, storage.ErrConflict) || !strings.Contains(err.Error(), "unchanged") {
		t.Fatalf("Put with a backend that always conflicts: %v", err)
	}
	if _, c := b.calls(); c != 1 {
		t.Fatalf("an inexplicable conflict was retried %d times", c)
	}
}

// TestFencedConcurrentNewTerms has many Stores on one backend race to
// raise the fence; afterwards the fence record holds the largest token and
// every smaller one is refused everywhere.
func TestFencedConcurrentNewTerms(t *testing.T) {
	ctx := t.Context()
	b := memstore.NewBackend()
	const n = 16
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			s := storage.Fenced(b)
			for j := range 20 {
				_, err := s.Put(ctx, fence.Token(j*n+i+1), "k", nil)
				if err != nil && !errors.Is(err, fence.ErrStale) {
					t.Errorf("Put: %v", err)
				}
			}
		})
	}
	wg.Wait()
	it, err := b.Get(ctx, storage.DefaultFenceKey)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := storage.DecodeFence(it.Value)
	if err != nil {
		t.Fatal(err)
	}
	// The largest token, 20*16, may itself have lost to nothing: every
	// writer's last token is admitted unless a larger one was, and the
	// largest cannot be refused.
	if tok != 20*n {
		t.Fatalf("fence record holds %d, want the largest token %d", tok, 20*n)
	}
	if _, err := storage.Fenced(b).Put(ctx, 20*n-1, "k", nil); !errors.Is(err, fence.ErrStale) {
		t.Fatalf("Put below the final fence: %v", err)
	}
}
