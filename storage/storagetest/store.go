package storagetest

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/storage"
)

func testCRUD(t *testing.T, s storage.Store, _ config) {
	wantAbsent(t, s, "k")
	v1 := mustPut(t, s, 1, "k", []byte("one"))
	wantItem(t, s, "k", []byte("one"), v1)
	v2 := mustPut(t, s, 1, "k", []byte("two"))
	wantItem(t, s, "k", []byte("two"), v2)
	wantAbsent(t, s, "other")

	if err := s.Delete(t.Context(), 1, "k"); err != nil {
		t.Fatalf("Delete(%q): %v", "k", err)
	}
	wantAbsent(t, s, "k")
	// Deleting an absent key is not an error.
	if err := s.Delete(t.Context(), 1, "k"); err != nil {
		t.Fatalf("Delete(%q) of an absent key: %v", "k", err)
	}
	if err := s.Delete(t.Context(), 1, "never-written"); err != nil {
		t.Fatalf("Delete(%q) of a key never written: %v", "never-written", err)
	}
}

func testEmptyValue(t *testing.T, s storage.Store, _ config) {
	// nil and empty are the same value, and both are present, not absent.
	for _, tc := range []struct {
		key   string
		value []byte
	}{{"nil", nil}, {"empty", []byte{}}} {
		v := mustPut(t, s, 1, tc.key, tc.value)
		it := mustGet(t, s, tc.key)
		if len(it.Value) != 0 || it.Version != v {
			t.Fatalf("Get(%q) after Put of a %s value = (%s, version %d), want (empty, version %d)", tc.key, tc.key, show(it.Value), it.Version, v)
		}
	}
}

func testValuesCopied(t *testing.T, s storage.Store, _ config) {
	in := []byte("original")
	mustPut(t, s, 1, "k", in)
	copy(in, "XXXXXXXX")
	wantItem(t, s, "k", []byte("original"), 0)

	got := mustGet(t, s, "k")
	copy(got.Value, "YYYYYYYY")
	wantItem(t, s, "k", []byte("original"), 0)

	in = []byte("swapped")
	v, err := s.CompareAndSwap(t.Context(), 1, "k", mustGet(t, s, "k").Version, in)
	if err != nil {
		t.Fatalf("CompareAndSwap(%q): %v", "k", err)
	}
	copy(in, "ZZZZZZZ")
	wantItem(t, s, "k", []byte("swapped"), v)
}

func testVersions(t *testing.T, s storage.Store, _ config) {
	// Versions of a key increase with every write and are never reused,
	// not even after the key was deleted and written again.
	seen := map[storage.Version]string{}
	var last storage.Version
	record := func(v storage.Version, what string) {
		t.Helper()
		if v <= last {
			t.Fatalf("%s returned version %d, not above the key's previous version %d", what, v, last)
		}
		if prev, ok := seen[v]; ok {
			t.Fatalf("%s returned version %d, already returned by %s", what, v, prev)
		}
		seen[v], last = what, v
	}
	for i := range 3 {
		record(mustPut(t, s, 1, "k", []byte("same")), fmt.Sprintf("Put #%d of the same value", i))
	}
	mustPut(t, s, 1, "unrelated", []byte("x"))
	if err := s.Delete(t.Context(), 1, "k"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	record(mustPut(t, s, 1, "k", []byte("again")), "Put after Delete")
	wantItem(t, s, "k", []byte("again"), last)
	if err := s.Delete(t.Context(), 1, "k"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	v, err := s.CompareAndSwap(t.Context(), 1, "k", 0, []byte("cas"))
	if err != nil {
		t.Fatalf("CompareAndSwap(version 0) after Delete: %v", err)
	}
	record(v, "CompareAndSwap after Delete")
	wantItem(t, s, "k", []byte("cas"), v)
}

func testCompareAndSwap(t *testing.T, s storage.Store, _ config) {
	ctx := t.Context()
	// Version 0 means "must be absent".
	v1, err := s.CompareAndSwap(ctx, 1, "k", 0, []byte("created"))
	if err != nil {
		t.Fatalf("CompareAndSwap(%q, 0) on an absent key: %v", "k", err)
	}
	wantItem(t, s, "k", []byte("created"), v1)
	_, err = s.CompareAndSwap(ctx, 1, "k", 0, []byte("again"))
	wantErr(t, "CompareAndSwap(version 0) on a present key", err, storage.ErrConflict)
	wantItem(t, s, "k", []byte("created"), v1)

	v2, err := s.CompareAndSwap(ctx, 1, "k", v1, []byte("second"))
	if err != nil {
		t.Fatalf("CompareAndSwap at the current version: %v", err)
	}
	if v2 <= v1 {
		t.Fatalf("CompareAndSwap returned version %d, not above %d", v2, v1)
	}
	wantItem(t, s, "k", []byte("second"), v2)

	// An out-of-date version, and one that was never assigned.
	for _, old := range []storage.Version{v1, v2 + 1000} {
		_, err = s.CompareAndSwap(ctx, 1, "k", old, []byte("lost"))
		wantErr(t, fmt.Sprintf("CompareAndSwap at version %d with the key at %d", old, v2), err, storage.ErrConflict)
		wantItem(t, s, "k", []byte("second"), v2)
	}
	// A non-zero version on an absent key.
	_, err = s.CompareAndSwap(ctx, 1, "absent", v2, []byte("lost"))
	wantErr(t, "CompareAndSwap(non-zero version) on an absent key", err, storage.ErrConflict)
	wantAbsent(t, s, "absent")

	// A version conflict admits no token: token 3 fails on the version,
	// so token 2 must still be admitted afterwards.
	_, err = s.CompareAndSwap(ctx, 3, "k", v1, []byte("lost"))
	wantErr(t, "CompareAndSwap with a newer token at an old version", err, storage.ErrConflict)
	mustPut(t, s, 2, "k", []byte("token 2"))
}

func testStaleToken(t *testing.T, s storage.Store, _ config) {
	ctx := t.Context()
	mustPut(t, s, 5, "k", []byte("five"))
	v := mustPut(t, s, 7, "other", []byte("seven")) // admits 7 for every key
	wantStale := func(what string, err error) {
		t.Helper()
		wantErr(t, what, err, fence.ErrStale)
		if msg := err.Error(); !strings.Contains(msg, "6") || !strings.Contains(msg, "7") {
			t.Errorf("%s: error %q does not name both tokens (6 and 7)", what, msg)
		}
	}
	for _, key := range []string{"k", "other", "never-written"} {
		_, err := s.Put(ctx, 6, key, []byte("stale"))
		wantStale(fmt.Sprintf("Put(token 6, %q) after token 7", key), err)
		cur := storage.Version(0)
		if it, err := s.Get(ctx, key); err == nil {
			cur = it.Version
		}
		// Stale even when the version matches: the fence comes first.
		_, err = s.CompareAndSwap(ctx, 6, key, cur, []byte("stale"))
		wantStale(fmt.Sprintf("CompareAndSwap(token 6, %q, current version) after token 7", key), err)
		err = s.Delete(ctx, 6, key)
		wantStale(fmt.Sprintf("Delete(token 6, %q) after token 7", key), err)
	}
	wantItem(t, s, "k", []byte("five"), 0)
	wantItem(t, s, "other", []byte("seven"), v)
	wantAbsent(t, s, "never-written")
	_, err := s.Put(ctx, 1, "k", []byte("stale"))
	wantErr(t, "Put(token 1) after token 7", err, fence.ErrStale)

	// A Delete admits its token too, even of a key that does not exist.
	if err := s.Delete(ctx, 9, "never-written"); err != nil {
		t.Fatalf("Delete(token 9) of an absent key: %v", err)
	}
	_, err = s.Put(ctx, 8, "k", []byte("stale"))
	wantErr(t, "Put(token 8) after Delete with token 9", err, fence.ErrStale)
	wantItem(t, s, "k", []byte("five"), 0)
}

func testEqualToken(t *testing.T, s storage.Store, _ config) {
	ctx := t.Context()
	mustPut(t, s, 4, "a", []byte("1"))
	mustPut(t, s, 4, "b", []byte("2"))
	v := mustPut(t, s, 4, "a", []byte("3"))
	v2, err := s.CompareAndSwap(ctx, 4, "a", v, []byte("4"))
	if err != nil {
		t.Fatalf("CompareAndSwap with the admitted token: %v", err)
	}
	if err := s.Delete(ctx, 4, "b"); err != nil {
		t.Fatalf("Delete with the admitted token: %v", err)
	}
	wantItem(t, s, "a", []byte("4"), v2)
	wantAbsent(t, s, "b")
	// And a larger token after it.
	mustPut(t, s, 5, "a", []byte("5"))
	_, err = s.Put(ctx, 4, "a", []byte("stale"))
	wantErr(t, "Put(token 4) after token 5", err, fence.ErrStale)
}

func testZeroToken(t *testing.T, s storage.Store, _ config) {
	ctx := t.Context()
	_, err := s.Put(ctx, 0, "k", []byte("x"))
	wantErr(t, "Put(token 0)", err, fence.ErrNoToken)
	_, err = s.CompareAndSwap(ctx, 0, "k", 0, []byte("x"))
	wantErr(t, "CompareAndSwap(token 0)", err, fence.ErrNoToken)
	err = s.Delete(ctx, 0, "k")
	wantErr(t, "Delete(token 0)", err, fence.ErrNoToken)
	wantAbsent(t, s, "k")
	// Token 0 was not admitted, and token 1 is not stale.
	mustPut(t, s, 1, "k", []byte("one"))
}

func testInvalidKeys(t *testing.T, s storage.Store, _ config) {
	ctx := t.Context()
	keys := map[string]string{
		"empty":        "",
		"too long":     strings.Repeat("k", storage.MaxKeyLen+1),
		"invalid UTF8": "bad\xffkey",
		"NUL byte":     "a\x00b",
	}
	for name, key := range keys {
		_, err := s.Get(ctx, key)
		wantErr(t, "Get of a key that is "+name, err, storage.ErrInvalidKey)
		_, err = s.Put(ctx, 1, key, []byte("x"))
		wantErr(t, "Put of a key that is "+name, err, storage.ErrInvalidKey)
		_, err = s.CompareAndSwap(ctx, 1, key, 0, []byte("x"))
		wantErr(t, "CompareAndSwap of a key that is "+name, err, storage.ErrInvalidKey)
		err = s.Delete(ctx, 1, key)
		wantErr(t, "Delete of a key that is "+name, err, storage.ErrInvalidKey)
	}
}

// oddKeys are valid keys that a careless backend might confuse with each
// other, with a path, or with its own files.
func oddKeys() []string {
	return []string{
		"a/b", "a", "b", "a%2Fb", "a_b", "A/B", "../x", "..", ".", "./x", "/abs",
		"a/", "a//b", "x/../y", "~", "con", "aux.txt", ".lock", ".tmp",
		"ünïcödé", "日本語/キー", "emoji 🙂", "with space", " leading", "trailing ",
		"tab\tnewline\n", "back\\slash", "colon:star*?", "\x01ctl",
		strings.Repeat("k", storage.MaxKeyLen),
		strings.Repeat("é", storage.MaxKeyLen/2),
		strings.Repeat("k", storage.MaxKeyLen-1) + "j",
	}
}

func testOddKeys(t *testing.T, s storage.Store, _ config) {
	keys := oddKeys()
	versions := make([]storage.Version, len(keys))
	for i, key := range keys {
		if err := storage.ValidateKey(key); err != nil {
			t.Fatalf("suite bug: %v", err)
		}
		versions[i] = mustPut(t, s, 1, key, []byte(fmt.Sprintf("value %d", i)))
	}
	for i, key := range keys {
		wantItem(t, s, key, []byte(fmt.Sprintf("value %d", i)), versions[i])
	}
	// Deleting one removes only that one.
	for i, key := range keys {
		if i%2 == 1 {
			if err := s.Delete(t.Context(), 1, key); err != nil {
				t.Fatalf("Delete(%q): %v", key, err)
			}
		}
	}
	for i, key := range keys {
		if i%2 == 1 {
			wantAbsent(t, s, key)
		} else {
			wantItem(t, s, key, []byte(fmt.Sprintf("value %d", i)), versions[i])
		}
	}
}

// LargeValueSize is the largest value the suite stores: 512 KiB, a third
// of etcd's default request limit of 1.5 MiB.
const LargeValueSize = 512 << 10

func testLargeValues(t *testing.T, s storage.Store, _ config) {
	for i, size := range []int{LargeValueSize, LargeValueSize - 1, 64<<10 + 3} {
		v := pattern(size, byte(i))
		ver := mustPut(t, s, 1, "large", v)
		wantItem(t, s, "large", v, ver)
	}
	big := pattern(LargeValueSize, 9)
	ver, err := s.CompareAndSwap(t.Context(), 1, "large", mustGet(t, s, "large").Version, big)
	if err != nil {
		t.Fatalf("CompareAndSwap of a %d-byte value: %v", len(big), err)
	}
	wantItem(t, s, "large", big, ver)
}

// pattern returns n bytes that differ between seeds and along the value,
// so that a truncated, shifted or mixed-up value does not compare equal.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	x := uint32(seed)*2654435761 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

func testManyKeys(t *testing.T, s storage.Store, c config) {
	n := c.n(500, 50)
	versions := make(map[string]storage.Version, n)
	for i := range n {
		key := fmt.Sprintf("many/%04d", i)
		versions[key] = mustPut(t, s, 1, key, []byte(key))
	}
	for i := range n {
		key := fmt.Sprintf("many/%04d", i)
		wantItem(t, s, key, []byte(key), versions[key])
	}
	wantAbsent(t, s, fmt.Sprintf("many/%04d", n))
}

func testConflictingCAS(t *testing.T, s storage.Store, c config) {
	const writers = 8
	for round, from := range []string{"absent", "present"} {
		key := "cas-" + from
		var old storage.Version
		if from == "present" {
			old = mustPut(t, s, 1, key, []byte("start"))
		}
		type result struct {
			v   storage.Version
			err error
		}
		results := make([]result, writers)
		start := make(chan struct{})
		done := make(chan int)
		for i := range writers {
			go func() {
				<-start
				v, err := s.CompareAndSwap(t.Context(), 1, key, old, []byte(fmt.Sprintf("writer %d", i)))
				results[i] = result{v, err}
				done <- i
			}()
		}
		close(start)
		for range writers {
			<-done
		}
		winner := -1
		for i, r := range results {
			switch {
			case r.err == nil && winner >= 0:
				t.Fatalf("round %d (%s): CompareAndSwap from version %d succeeded for writers %d and %d", round, from, old, winner, i)
			case r.err == nil:
				winner = i
			case !errors.Is(r.err, storage.ErrConflict):
				t.Fatalf("round %d (%s): writer %d: error %v, want nil or one matching storage.ErrConflict", round, from, i, r.err)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d (%s): every CompareAndSwap from version %d failed", round, from, old)
		}
		wantItem(t, s, key, []byte(fmt.Sprintf("writer %d", winner)), results[winner].v)
	}
}
