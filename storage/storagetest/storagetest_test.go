package storagetest_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/storage"
	"github.com/hakit/hakit/storage/memstore"
	"github.com/hakit/hakit/storage/storagetest"
)

// The suite must fail for broken backends, or it proves nothing. Each
// mutant below breaks one rule; TestMutants runs the suite against it in a
// child process (a failing suite fails its test, which must not fail
// ours) and checks that the subtests expected to catch it did.

const mutantEnv = "STORAGETEST_MUTANT"

var mutants = map[string]struct {
	backend func() storage.Backend
	store   func() storage.Store
	// want lists subtests that must fail (a suffix of the subtest name).
	want []string
}{
	"versions-reused": {
		backend: func() storage.Backend { return &perKeyVersions{m: map[string]storage.Item{}} },
		want:    []string{"Fenced/Versions", "Fenced/Model"},
	},
	"conds-ignored": {
		backend: func() storage.Backend { return condsIgnored{memstore.NewBackend()} },
		want:    []string{"/CondsAreAtomic", "/ConcurrentIncrements", "TestMutant/Model", "Fenced/CompareAndSwap", "Fenced/ConflictingCompareAndSwap"},
	},
	"first-op-unconditional": {
		backend: func() storage.Backend { return firstOpFirst{memstore.NewBackend()} },
		want:    []string{"/CondsAreAtomic", "TestMutant/Model"},
	},
	"values-aliased": {
		backend: func() storage.Backend { return &aliasing{perKeyVersions: perKeyVersions{m: map[string]storage.Item{}}} },
		want:    []string{"TestMutant/ValuesAreCopied", "Fenced/ValuesAreCopied"},
	},
	"context-ignored": {
		backend: func() storage.Backend { return ctxIgnored{memstore.NewBackend()} },
		want:    []string{"TestMutant/ContextCancelled", "Fenced/ContextCancelled"},
	},
	"stale-allowed": {
		store: func() storage.Store { return staleAllowed{memstore.New()} },
		want:  []string{"/StaleToken", "/ConcurrentWriters", "/Model"},
	},
	"equal-refused": {
		store: func() storage.Store { return &equalRefused{Store: memstore.New()} },
		want:  []string{"/EqualToken", "/Model"},
	},
	"conflict-admits": {
		store: func() storage.Store { return &conflictAdmits{Store: memstore.New()} },
		want:  []string{"/CompareAndSwap", "/Model"},
	},
	"acknowledged-write-lost": {
		store: func() storage.Store { return &losesWrites{Store: memstore.New()} },
		want:  []string{"/ManyKeys", "/Model"},
	},
}

// TestMutant is the child side of TestMutants.
func TestMutant(t *testing.T) {
	name := os.Getenv(mutantEnv)
	if name == "" {
		t.Skip("runs only as a child of TestMutants")
	}
	m := mutants[name]
	if m.backend != nil {
		storagetest.TestBackend(t, func(t *testing.T) storage.Backend { return m.backend() })
	} else {
		storagetest.TestStore(t, func(t *testing.T) storage.Store { return m.store() })
	}
}

func TestMutants(t *testing.T) {
	if os.Getenv(mutantEnv) != "" {
		return
	}
	for name, m := range mutants {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestMutant$", "-test.v", "-rapid.nofailfile")
			cmd.Env = append(os.Environ(), mutantEnv+"="+name)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) {
				t.Fatalf("the suite passed against mutant %q (err %v); output:\n%s", name, err, out)
			}
			for _, sub := range m.want {
				if !failed(string(out), sub) {
					t.Errorf("subtest *%s did not fail against mutant %q", sub, name)
				}
			}
			if t.Failed() {
				t.Logf("output:\n%s", out)
			}
		})
	}
}

func failed(out, suffix string) bool {
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "--- FAIL: ") {
			name, _, _ := strings.Cut(strings.TrimPrefix(line, "--- FAIL: "), " ")
			if strings.HasSuffix(name, suffix) {
				return true
			}
		}
	}
	return false
}

// perKeyVersions restarts a key's versions at 1 when it is recreated.
type perKeyVersions struct {
	mu sync.Mutex
	m  map[string]storage.Item
}

func (b *perKeyVersions) Get(ctx context.Context, key string) (storage.Item, error) {
	if err := ctx.Err(); err != nil {
		return storage.Item{}, err
	}
	if err := storage.ValidateKey(key); err != nil {
		return storage.Item{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	it, ok := b.m[key]
	if !ok {
		return storage.Item{}, storage.ErrNotFound
	}
	return storage.Item{Value: append([]byte{}, it.Value...), Version: it.Version}, nil
}

func (b *perKeyVersions) Commit(ctx context.Context, conds []storage.Cond, ops []storage.Op) (storage.Version, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range conds {
		if b.m[c.Key].Version != c.Version {
			return 0, storage.ErrConflict
		}
	}
	// The contract wants one version for the whole commit; this mutant
	// gives the largest next per-key version to all keys.
	var v storage.Version
	for _, op := range ops {
		v = max(v, b.m[op.Key].Version+1)
	}
	for _, op := range ops {
		if op.Delete {
			delete(b.m, op.Key)
		} else {
			b.m[op.Key] = storage.Item{Value: append([]byte{}, op.Value...), Version: v}
		}
	}
	return v, nil
}

type condsIgnored struct{ *memstore.Backend }

func (b condsIgnored) Commit(ctx context.Context, _ []storage.Cond, ops []storage.Op) (storage.Version, error) {
	return b.Backend.Commit(ctx, nil, ops)
}

// aliasing keeps the caller's slices.
type aliasing struct {
	perKeyVersions
	version storage.Version
}

func (b *aliasing) Get(ctx context.Context, key string) (storage.Item, error) {
	if err := ctx.Err(); err != nil {
		return storage.Item{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	it, ok := b.m[key]
	if !ok {
		return storage.Item{}, storage.ErrNotFound
	}
	return it, nil
}

func (b *aliasing) Commit(ctx context.Context, conds []storage.Cond, ops []storage.Op) (storage.Version, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range conds {
		if b.m[c.Key].Version != c.Version {
			return 0, storage.ErrConflict
		}
	}
	b.version++
	for _, op := range ops {
		if op.Delete {
			delete(b.m, op.Key)
		} else {
			b.m[op.Key] = storage.Item{Value: op.Value, Version: b.version}
		}
	}
	return b.version, nil
}

// firstOpFirst applies the first op before checking the conditions.
type firstOpFirst struct{ *memstore.Backend }

func (b firstOpFirst) Commit(ctx context.Context, conds []storage.Cond, ops []storage.Op) (storage.Version, error) {
	if len(ops) < 2 {
		return b.Backend.Commit(ctx, conds, ops)
	}
	if _, err := b.Backend.Commit(ctx, nil, ops[:1]); err != nil {
		return 0, err
	}
	return b.Backend.Commit(ctx, conds, ops[1:])
}

type ctxIgnored struct{ *memstore.Backend }

func (b ctxIgnored) Get(_ context.Context, key string) (storage.Item, error) {
	return b.Backend.Get(context.Background(), key)
}

func (b ctxIgnored) Commit(_ context.Context, conds []storage.Cond, ops []storage.Op) (storage.Version, error) {
	return b.Backend.Commit(context.Background(), conds, ops)
}

// staleAllowed retries a stale write with the highest token, as a careless
// wrapper might.
type staleAllowed struct{ storage.Store }

func (s staleAllowed) Put(ctx context.Context, t fence.Token, key string, v []byte) (storage.Version, error) {
	ver, err := s.Store.Put(ctx, t, key, v)
	if se := (*fence.StaleError)(nil); errors.As(err, &se) {
		return s.Store.Put(ctx, se.High, key, v)
	}
	return ver, err
}

// equalRefused refuses a token equal to the last one admitted.
type equalRefused struct {
	storage.Store
	mu   sync.Mutex
	last fence.Token
}

func (s *equalRefused) Put(ctx context.Context, t fence.Token, key string, v []byte) (storage.Version, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t != 0 && t == s.last {
		return 0, fence.Stale(t, s.last)
	}
	ver, err := s.Store.Put(ctx, t, key, v)
	if err == nil {
		s.last = t
	}
	return ver, err
}

// conflictAdmits raises the fence even when a compare-and-swap fails on
// the version.
type conflictAdmits struct{ storage.Store }

func (s *conflictAdmits) CompareAndSwap(ctx context.Context, t fence.Token, key string, old storage.Version, v []byte) (storage.Version, error) {
	ver, err := s.Store.CompareAndSwap(ctx, t, key, old, v)
	if errors.Is(err, storage.ErrConflict) {
		_ = s.Store.Delete(ctx, t, "zz-fence-raiser")
	}
	return ver, err
}

// losesWrites acknowledges every 7th Put without storing it.
type losesWrites struct {
	storage.Store
	mu sync.Mutex
	n  int
}

func (s *losesWrites) Put(ctx context.Context, t fence.Token, key string, v []byte) (storage.Version, error) {
	s.mu.Lock()
	s.n++
	drop := s.n%7 == 0
	s.mu.Unlock()
	if drop && t != 0 && storage.ValidateKey(key) == nil {
		return 1 << 40, nil
	}
	return s.Store.Put(ctx, t, key, v)
}

// TestCheckHistoryRejects feeds CheckHistory histories that a correct
// store cannot produce; each must fail it.
func TestCheckHistoryRejects(t *testing.T) {
	put := func(client int, start, end int64, tok fence.Token, key, val string, ok bool) storagetest.Call {
		return storagetest.Call{Client: client, Start: start, End: end, Key: key, Token: tok, Value: val, OK: ok, Stale: !ok}
	}
	get := func(client int, start, end int64, key, val string) storagetest.Call {
		return storagetest.Call{Client: client, Start: start, End: end, Get: true, Key: key, Value: val, OK: val != "", NotFound: val == ""}
	}
	bad := map[string][]storagetest.Call{
		"token went down":       {put(0, 1, 2, 5, "k", "a", true), put(1, 3, 4, 3, "k", "b", true)},
		"stale refused wrongly": {put(0, 1, 2, 5, "k", "a", true), put(1, 3, 4, 6, "j", "b", false)},
		"lost write":            {put(0, 1, 2, 5, "k", "a", true), get(1, 3, 4, "k", "")},
		"stale write visible":   {put(0, 1, 2, 5, "k", "a", true), put(1, 3, 4, 4, "k", "b", false), get(0, 5, 6, "k", "b")},
		"read from the future":  {get(1, 1, 2, "k", "a"), put(0, 3, 4, 5, "k", "a", true)},
	}
	for name, calls := range bad {
		t.Run(name, func(t *testing.T) {
			ft := &fakeT{TB: t}
			func() {
				defer func() { _ = recover() }()
				storagetest.CheckHistory(ft, calls)
			}()
			if !ft.failed {
				t.Errorf("CheckHistory accepted %v", calls)
			}
		})
	}
	good := []storagetest.Call{put(0, 1, 4, 5, "k", "a", true), put(1, 2, 3, 4, "k", "b", true), get(2, 5, 6, "k", "a")}
	storagetest.CheckHistory(t, good)
}

// fakeT records a failure instead of failing the test; Fatalf panics to
// stop the checker, as testing's would stop the goroutine.
type fakeT struct {
	testing.TB
	failed bool
}

func (f *fakeT) Helper() {}

func (f *fakeT) Fatalf(format string, args ...any) {
	f.failed = true
	panic("fatal")
}

func (f *fakeT) Logf(format string, args ...any) {}
