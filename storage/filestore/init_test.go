package filestore

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/hakit/hakit/storage"
)

func TestOpenNeedsInit(t *testing.T) {
	empty := t.TempDir()
	for name, dir := range map[string]string{"empty directory": empty, "missing directory": filepath.Join(empty, "nope")} {
		if _, err := Open(t.Context(), dir); !errors.Is(err, ErrNoStore) {
			t.Errorf("Open of a %s: %v, want ErrNoStore", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(empty, "nope")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open created the directory it was given: %v", err)
	}
	if err := Init(t.Context(), empty); err != nil {
		t.Fatal(err)
	}
	if err := Init(t.Context(), empty); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second Init: %v, want fs.ErrExist", err)
	}
	mustOpen(t, empty)
}

func TestInitRefusesLeftoverKeys(t *testing.T) {
	dir := newDir(t)
	b := mustOpen(t, dir)
	mustCommit(t, b, nil, []storage.Op{{Key: "a", Value: []byte("x")}})
	if err := os.Remove(filepath.Join(dir, counterName)); err != nil {
		t.Fatal(err)
	}
	if err := Init(t.Context(), dir); !errors.Is(err, storage.ErrCorrupt) {
		t.Fatalf("Init over keys without a counter: %v, want storage.ErrCorrupt", err)
	}
}

// TestStoreVanishes replaces the store's directory with an empty one
// under an open Backend, as an unmounted volume would: reads must not
// report every key absent, and writes must not start a new store.
func TestStoreVanishes(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "mnt")
	if err := Init(t.Context(), dir); err != nil {
		t.Fatal(err)
	}
	b := mustOpen(t, dir)
	mustCommit(t, b, nil, []storage.Op{{Key: "ckpt", Value: []byte("position 9")}})
	if err := os.Rename(dir, filepath.Join(parent, "elsewhere")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(t.Context(), "ckpt"); !errors.Is(err, ErrNoStore) || errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Get after the store vanished: %v, want ErrNoStore and not ErrNotFound", err)
	}
	if _, err := b.Commit(t.Context(), nil, []storage.Op{{Key: "ckpt", Value: []byte("x")}}); !errors.Is(err, ErrNoStore) {
		t.Fatalf("Commit after the store vanished: %v, want ErrNoStore", err)
	}
	if _, err := b.Commit(t.Context(), []storage.Cond{{Key: "ckpt", Version: 0}}, []storage.Op{{Key: "ckpt", Value: []byte("x")}}); !errors.Is(err, ErrNoStore) {
		t.Fatalf("Commit conditioned on an absent key after the store vanished: %v, want ErrNoStore", err)
	}
	if _, err := Open(t.Context(), dir); !errors.Is(err, ErrNoStore) {
		t.Fatalf("Open of the empty directory: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Fatalf("the empty directory gained %d entries", len(entries))
	}
}
