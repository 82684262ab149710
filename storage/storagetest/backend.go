package storagetest

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"testing"

	"github.com/hakit/hakit/storage"
)

func mustCommit(t *testing.T, b storage.Backend, conds []storage.Cond, ops []storage.Op) storage.Version {
	t.Helper()
	v, err := b.Commit(t.Context(), conds, ops)
	if err != nil {
		t.Fatalf("Commit(%v, %s): %v", conds, describeOps(ops), err)
	}
	if v == 0 {
		t.Fatalf("Commit(%v, %s) returned version 0", conds, describeOps(ops))
	}
	return v
}

func describeOps(ops []storage.Op) string {
	s := "["
	for i, op := range ops {
		if i > 0 {
			s += " "
		}
		if op.Delete {
			s += "delete " + strconv.Quote(op.Key)
		} else {
			s += fmt.Sprintf("put %q=%s", op.Key, show(op.Value))
		}
	}
	return s + "]"
}

func put(key, value string) storage.Op { return storage.Op{Key: key, Value: []byte(value)} }

func testBackendGetAbsent(t *testing.T, b storage.Backend, _ config) {
	wantAbsent(t, b, "k")
	wantAbsent(t, b, "a/b")
}

func testBackendCommit(t *testing.T, b storage.Backend, _ config) {
	v1 := mustCommit(t, b, nil, []storage.Op{put("a", "1")})
	wantItem(t, b, "a", []byte("1"), v1)

	// Several ops: every written key gets the one returned version.
	v2 := mustCommit(t, b, []storage.Cond{{Key: "a", Version: v1}, {Key: "b", Version: 0}},
		[]storage.Op{put("a", "2"), put("b", "2"), put("c", "2")})
	if v2 <= v1 {
		t.Fatalf("second Commit returned version %d, not above %d", v2, v1)
	}
	for _, k := range []string{"a", "b", "c"} {
		wantItem(t, b, k, []byte("2"), v2)
	}

	// A condition on a key the commit does not write.
	v3 := mustCommit(t, b, []storage.Cond{{Key: "c", Version: v2}, {Key: "zz", Version: 0}}, []storage.Op{put("d", "3")})
	wantItem(t, b, "d", []byte("3"), v3)
	wantItem(t, b, "c", []byte("2"), v2)

	// Conds only on absent keys, and a cond matching exactly.
	v4 := mustCommit(t, b, []storage.Cond{{Key: "new", Version: 0}}, []storage.Op{put("new", "4")})
	_, err := b.Commit(t.Context(), []storage.Cond{{Key: "new", Version: 0}}, []storage.Op{put("new", "5")})
	wantErr(t, "Commit with cond version 0 on a present key", err, storage.ErrConflict)
	wantItem(t, b, "new", []byte("4"), v4)
}

func testBackendCondsAtomic(t *testing.T, b storage.Backend, _ config) {
	va := mustCommit(t, b, nil, []storage.Op{put("a", "A")})
	vb := mustCommit(t, b, nil, []storage.Op{put("b", "B")})
	cases := []struct {
		name  string
		conds []storage.Cond
	}{
		{"first cond fails", []storage.Cond{{Key: "a", Version: va + 1000}, {Key: "b", Version: vb}}},
		{"last cond fails", []storage.Cond{{Key: "a", Version: va}, {Key: "b", Version: va}}},
		{"absent key expected present", []storage.Cond{{Key: "a", Version: va}, {Key: "nope", Version: vb}}},
		{"present key expected absent", []storage.Cond{{Key: "a", Version: va}, {Key: "b", Version: 0}}},
	}
	for _, tc := range cases {
		_, err := b.Commit(t.Context(), tc.conds, []storage.Op{put("a", "lost"), put("c", "lost"), {Key: "b", Delete: true}})
		wantErr(t, "Commit where "+tc.name, err, storage.ErrConflict)
		wantItem(t, b, "a", []byte("A"), va)
		wantItem(t, b, "b", []byte("B"), vb)
		wantAbsent(t, b, "c")
	}
}

func testBackendDelete(t *testing.T, b storage.Backend, _ config) {
	v1 := mustCommit(t, b, nil, []storage.Op{put("a", "1"), put("b", "1")})
	v2 := mustCommit(t, b, []storage.Cond{{Key: "a", Version: v1}}, []storage.Op{{Key: "a", Delete: true}, put("b", "2")})
	wantAbsent(t, b, "a")
	wantItem(t, b, "b", []byte("2"), v2)
	// Deleting an absent key is fine and still gives a new version.
	v3 := mustCommit(t, b, nil, []storage.Op{{Key: "a", Delete: true}})
	if v3 <= v2 {
		t.Fatalf("Commit of a delete returned version %d, not above %d", v3, v2)
	}
	// Recreated, the key gets a version above every earlier one.
	v4 := mustCommit(t, b, []storage.Cond{{Key: "a", Version: 0}}, []storage.Op{put("a", "again")})
	if v4 <= v3 {
		t.Fatalf("recreating a deleted key gave version %d, not above %d", v4, v3)
	}
	wantItem(t, b, "a", []byte("again"), v4)
}

func testBackendVersionsIncrease(t *testing.T, b storage.Backend, c config) {
	var last storage.Version
	for i := range c.n(50, 10) {
		key := fmt.Sprintf("k%d", i%5)
		v := mustCommit(t, b, nil, []storage.Op{put(key, strconv.Itoa(i))})
		if v <= last {
			t.Fatalf("commit %d (key %q) returned version %d, not above the previous commit's %d", i, key, v, last)
		}
		last = v
	}
}

func testBackendValuesCopied(t *testing.T, b storage.Backend, _ config) {
	in := []byte("original")
	mustCommit(t, b, nil, []storage.Op{{Key: "k", Value: in}})
	copy(in, "XXXXXXXX")
	wantItem(t, b, "k", []byte("original"), 0)
	got := mustGet(t, b, "k")
	copy(got.Value, "YYYYYYYY")
	wantItem(t, b, "k", []byte("original"), 0)
}

func testBackendContextCancelled(t *testing.T, b storage.Backend, _ config) {
	v := mustCommit(t, b, nil, []storage.Op{put("k", "before")})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := b.Get(ctx, "k")
	wantErr(t, "Get with a cancelled context", err, context.Canceled)
	_, err = b.Commit(ctx, []storage.Cond{{Key: "k", Version: v}}, []storage.Op{put("k", "after"), put("new", "after")})
	wantErr(t, "Commit with a cancelled context", err, context.Canceled)
	wantItem(t, b, "k", []byte("before"), v)
	wantAbsent(t, b, "new")
}

// testBackendConcurrentMultiKey has goroutines commit the same two keys
// unconditionally, each commit with its own value. Were a commit not
// atomic, the keys could end up from different commits.
func testBackendConcurrentMultiKey(t *testing.T, b storage.Backend, c config) {
	const goroutines = 4
	n := c.n(25, 5)
	var wg sync.WaitGroup
	errc := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			for i := range n {
				val := fmt.Sprintf("g%d i%d", g, i)
				if _, err := b.Commit(t.Context(), nil, []storage.Op{put("x", val), put("y", val)}); err != nil {
					errc <- fmt.Errorf("goroutine %d: Commit: %w", g, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	x, y := mustGet(t, b, "x"), mustGet(t, b, "y")
	if string(x.Value) != string(y.Value) || x.Version != y.Version {
		t.Fatalf("after concurrent two-key commits x = (%q, %d) and y = (%q, %d): not from one commit", x.Value, x.Version, y.Value, y.Version)
	}
}

// testBackendConcurrentIncrements has goroutines increment a counter with
// read, then conditional commit, retrying on conflict; each commit also
// writes a log key named after the new count. No increment may be lost or
// applied twice, and every log key must exist.
func testBackendConcurrentIncrements(t *testing.T, b storage.Backend, c config) {
	const goroutines = 4
	n := c.n(15, 4)
	var wg sync.WaitGroup
	errc := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			for range n {
				// Each conflict means another goroutine's increment
				// landed, so a correct backend needs fewer retries than
				// there are increments in all; more means commits
				// conflict without progress.
				for attempt := 0; ; attempt++ {
					if attempt > goroutines*n {
						errc <- fmt.Errorf("goroutine %d: %d conflicting commits in a row without the counter reaching %d", g, attempt, goroutines*n)
						return
					}
					cur := storage.Item{}
					it, err := b.Get(t.Context(), "counter")
					switch {
					case err == nil:
						cur = it
					case !errors.Is(err, storage.ErrNotFound):
						errc <- fmt.Errorf("goroutine %d: Get: %w", g, err)
						return
					}
					count := 0
					if cur.Version != 0 {
						if count, err = strconv.Atoi(string(cur.Value)); err != nil {
							errc <- fmt.Errorf("goroutine %d: counter holds %q", g, cur.Value)
							return
						}
					}
					next := strconv.Itoa(count + 1)
					// Widen the window between read and commit, so that an
					// in-memory backend interleaves too.
					runtime.Gosched()
					_, err = b.Commit(t.Context(), []storage.Cond{{Key: "counter", Version: cur.Version}},
						[]storage.Op{put("counter", next), put("log/"+next, strconv.Itoa(g))})
					if err == nil {
						break
					}
					if !errors.Is(err, storage.ErrConflict) {
						errc <- fmt.Errorf("goroutine %d: Commit: %w", g, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	total := goroutines * n
	wantItem(t, b, "counter", []byte(strconv.Itoa(total)), 0)
	for i := 1; i <= total; i++ {
		mustGet(t, b, "log/"+strconv.Itoa(i))
	}
	wantAbsent(t, b, "log/"+strconv.Itoa(total+1))
}
