package filestore

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hakit/hakit/storage"
)

var errCrash = errors.New("simulated crash")

// newDir returns a new directory holding an empty store.
func newDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := Init(t.Context(), dir); err != nil {
		t.Fatalf("Init(%s): %v", dir, err)
	}
	return dir
}

func mustOpen(t *testing.T, dir string) *Backend {
	t.Helper()
	b, err := Open(t.Context(), dir)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func mustCommit(t *testing.T, b *Backend, conds []storage.Cond, ops []storage.Op) storage.Version {
	t.Helper()
	v, err := b.Commit(t.Context(), conds, ops)
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	return v
}

// TestCrashAtEveryStep stops a commit at each of its steps, as if the
// process died there, and checks that whoever uses the store next sees
// the commit either whole or not at all, with versions still increasing.
func TestCrashAtEveryStep(t *testing.T) {
	newVal := []byte("new")
	cases := map[string][]storage.Op{
		"multi": {{Key: "a", Value: newVal}, {Key: "b", Value: newVal}, {Key: "d", Delete: true}, {Key: "c", Value: newVal}},
		"put":   {{Key: "a", Value: newVal}},
		"del":   {{Key: "a", Delete: true}},
	}
	for name, ops := range cases {
		// Learn the steps of this commit.
		var steps []string
		probe := mustOpen(t, newDir(t))
		probe.crash = func(s string) error { steps = append(steps, s); return nil }
		mustCommit(t, probe, nil, ops)
		if len(steps) < 2 {
			t.Fatalf("%s: commit went through only steps %v", name, steps)
		}
		for i, step := range steps {
			for _, via := range []string{"Open", "Get", "Commit"} {
				t.Run(name+"/"+strings.ReplaceAll(step, " ", "_")+"/recovered_by_"+via, func(t *testing.T) {
					testCrashAt(t, ops, step, i, via)
				})
			}
		}
	}
}

func testCrashAt(t *testing.T, ops []storage.Op, step string, stepIndex int, via string) {
	dir := newDir(t)
	b := mustOpen(t, dir)
	other := mustOpen(t, dir) // another process's Backend, open all along
	old := map[string]storage.Version{}
	for _, k := range []string{"a", "b", "d"} {
		old[k] = mustCommit(t, b, nil, []storage.Op{{Key: k, Value: []byte("old")}})
	}
	before := old["d"]
	n := 0
	b.crash = func(s string) error {
		n++
		if n-1 == stepIndex {
			return errCrash
		}
		return nil
	}
	if _, err := b.Commit(t.Context(), nil, ops); !errors.Is(err, errCrash) {
		t.Fatalf("Commit crashing at %q: %v", step, err)
	}

	var r *Backend
	switch via {
	case "Open":
		r = mustOpen(t, dir)
		for _, d := range []string{dir, filepath.Join(dir, keysDir)} {
			entries, _ := os.ReadDir(d)
			for _, e := range entries {
				if strings.HasPrefix(e.Name(), tmpPrefix) {
					t.Errorf("Open left temporary file %s", filepath.Join(d, e.Name()))
				}
			}
		}
	case "Get":
		r = other
	case "Commit":
		r = other
		mustCommit(t, r, nil, []storage.Op{{Key: "unrelated", Value: []byte("x")}})
	}

	// The commit point: the journal's rename for several ops, the key
	// file's rename for one.
	committed := stepIndex >= 1
	if len(ops) > 1 {
		committed = stepIndex >= 0
	}
	var newVersion storage.Version
	for _, op := range ops {
		it, err := r.Get(t.Context(), op.Key)
		wasThere := old[op.Key] != 0
		switch {
		case committed && op.Delete, !committed && !wasThere:
			if !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("crash at %q (committed %v): Get(%q) = %q, %v; want not found", step, committed, op.Key, it.Value, err)
			}
		case committed:
			if err != nil || string(it.Value) != "new" || it.Version <= before {
				t.Fatalf("crash at %q after the commit point: Get(%q) = %q v%d, %v; want the new value above v%d", step, op.Key, it.Value, it.Version, err, before)
			}
			if newVersion != 0 && it.Version != newVersion {
				t.Fatalf("crash at %q: keys of one commit have versions %d and %d", step, newVersion, it.Version)
			}
			newVersion = it.Version
		default:
			if err != nil || string(it.Value) != "old" || it.Version != old[op.Key] {
				t.Fatalf("crash at %q before the commit point: Get(%q) = %q v%d, %v; want the old value at v%d", step, op.Key, it.Value, it.Version, err, old[op.Key])
			}
		}
	}
	if _, err := os.Stat(filepath.Join(dir, journalName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("journal still present after recovery: %v", err)
	}
	// Versions keep increasing past everything the crashed commit touched.
	v := mustCommit(t, r, nil, []storage.Op{{Key: "a", Value: []byte("after")}})
	if v <= max(before, newVersion) {
		t.Fatalf("commit after the crash got version %d, not above %d", v, max(before, newVersion))
	}
}

func TestOpenRefusesMissingCounter(t *testing.T) {
	dir := newDir(t)
	b := mustOpen(t, dir)
	mustCommit(t, b, nil, []storage.Op{{Key: "a", Value: []byte("x")}})
	if err := os.Remove(filepath.Join(dir, counterName)); err != nil {
		t.Fatal(err)
	}
	_, err := Open(t.Context(), dir)
	if !errors.Is(err, storage.ErrCorrupt) || !strings.Contains(err.Error(), counterName) {
		t.Fatalf("Open with the counter missing but keys present: %v", err)
	}
	if _, err := b.Commit(t.Context(), nil, []storage.Op{{Key: "a", Value: []byte("y")}}); !errors.Is(err, ErrNoStore) || !strings.Contains(err.Error(), counterName) {
		t.Fatalf("Commit with the counter missing: %v", err)
	}
}

func TestKeyFileNames(t *testing.T) {
	dir := newDir(t)
	b := mustOpen(t, dir)
	keys := []string{"../../escape", "/abs", ".", "..", "a/b", "ünï", strings.Repeat("x", storage.MaxKeyLen), "LOCK", "VERSION", "JOURNAL", ".tmp-x"}
	for _, k := range keys {
		mustCommit(t, b, nil, []storage.Op{{Key: k, Value: []byte(k)}})
	}
	var names []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		names = append(names, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		switch {
		case n == "." || n == lockName || n == counterName || n == keysDir:
		case strings.HasPrefix(n, keysDir+string(filepath.Separator)):
			base := strings.TrimPrefix(n, keysDir+string(filepath.Separator))
			if len(base) != 64 || strings.Trim(base, "0123456789abcdef") != "" {
				t.Errorf("key file %q is not named by 64 lowercase hex digits", n)
			}
		default:
			t.Errorf("unexpected file %q in the store", n)
		}
	}
	if got := len(names) - 4; got != len(keys) {
		t.Errorf("%d key files for %d keys: %v", got, len(keys), names)
	}
	for _, k := range keys {
		it, err := b.Get(t.Context(), k)
		if err != nil || string(it.Value) != k {
			t.Errorf("Get(%q) = %q, %v", k, it.Value, err)
		}
	}
}
