package filestore

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/hakit/hakit/storage"
)

// damage rewrites a file in place with f applied to its contents.
func damage(t *testing.T, path string, f func([]byte) []byte) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, f(data), 0o640); err != nil {
		t.Fatal(err)
	}
}

func wantCorrupt(t *testing.T, what string, err error, path string) {
	t.Helper()
	if !errors.Is(err, storage.ErrCorrupt) {
		t.Fatalf("%s: error %v, want one matching storage.ErrCorrupt", what, err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Fatalf("%s: error %q does not name the file %s", what, err, path)
	}
	if errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("%s: a damaged file reads as not found: %v", what, err)
	}
}

// TestCorruptKeyFile damages a key's file every way a disk or a torn
// write can: each byte flipped, each truncation, garbage, an empty file,
// an extension, another key's file. Every read must fail, naming the
// file; no damage may read as a value or as "absent".
func TestCorruptKeyFile(t *testing.T) {
	dir := newDir(t)
	b := mustOpen(t, dir)
	v := mustCommit(t, b, nil, []storage.Op{{Key: "ckpt", Value: []byte("position 4711")}, {Key: "other", Value: []byte("x")}})
	path := filepath.Join(dir, keysDir, keyFileName("ckpt"))
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	otherFile, err := os.ReadFile(filepath.Join(dir, keysDir, keyFileName("other")))
	if err != nil {
		t.Fatal(err)
	}
	type variant struct {
		name string
		data []byte
	}
	var variants []variant
	for i := range good {
		for _, bit := range []byte{0x01, 0x80} {
			d := append([]byte{}, good...)
			d[i] ^= bit
			variants = append(variants, variant{"flip byte " + strconv.Itoa(i), d})
		}
	}
	for n := range len(good) {
		variants = append(variants, variant{"truncated to " + strconv.Itoa(n), append([]byte{}, good[:n]...)})
	}
	variants = append(variants,
		variant{"extended", append(append([]byte{}, good...), 0)},
		variant{"garbage", []byte(strings.Repeat("garbage!", 8))},
		variant{"zeros", make([]byte, len(good))},
		variant{"another key's file", otherFile},
	)
	for _, vr := range variants {
		if err := os.WriteFile(path, vr.data, 0o640); err != nil {
			t.Fatal(err)
		}
		_, err := b.Get(t.Context(), "ckpt")
		wantCorrupt(t, "Get after "+vr.name, err, path)
		_, err = b.Commit(t.Context(), []storage.Cond{{Key: "ckpt", Version: v}}, []storage.Op{{Key: "x", Value: nil}})
		wantCorrupt(t, "Commit with a condition on the key after "+vr.name, err, path)
	}
	// Restored, it reads again: the errors were about the file, not the
	// store.
	if err := os.WriteFile(path, good, 0o640); err != nil {
		t.Fatal(err)
	}
	if it, err := b.Get(t.Context(), "ckpt"); err != nil || string(it.Value) != "position 4711" || it.Version != v {
		t.Fatalf("Get after restoring the file = %q v%d, %v", it.Value, it.Version, err)
	}
}

func TestCorruptCounter(t *testing.T) {
	dir := newDir(t)
	b := mustOpen(t, dir)
	mustCommit(t, b, nil, []storage.Op{{Key: "a", Value: []byte("x")}})
	path := filepath.Join(dir, counterName)
	damage(t, path, func(d []byte) []byte { d[10] ^= 1; return d })
	_, err := b.Commit(t.Context(), nil, []storage.Op{{Key: "a", Value: []byte("y")}})
	wantCorrupt(t, "Commit with a damaged counter", err, path)
	_, err = Open(t.Context(), dir)
	wantCorrupt(t, "Open with a damaged counter", err, path)
	if it, err := b.Get(t.Context(), "a"); err != nil || string(it.Value) != "x" {
		t.Fatalf("Get after the failed commit = %q, %v; want the old value", it.Value, err)
	}
}

func TestCorruptJournal(t *testing.T) {
	dir := newDir(t)
	b := mustOpen(t, dir)
	mustCommit(t, b, nil, []storage.Op{{Key: "a", Value: []byte("x")}})
	b.crash = func(s string) error {
		if s == "journal written" {
			return errCrash
		}
		return nil
	}
	if _, err := b.Commit(t.Context(), nil, []storage.Op{{Key: "a", Value: []byte("y")}, {Key: "b", Value: []byte("y")}}); !errors.Is(err, errCrash) {
		t.Fatal(err)
	}
	b.crash = nil
	path := filepath.Join(dir, journalName)
	damage(t, path, func(d []byte) []byte { d[len(d)-6] ^= 0x20; return d })
	_, err := b.Get(t.Context(), "a")
	wantCorrupt(t, "Get with a damaged journal", err, path)
	_, err = b.Commit(t.Context(), nil, []storage.Op{{Key: "c", Value: nil}})
	wantCorrupt(t, "Commit with a damaged journal", err, path)
	_, err = Open(t.Context(), dir)
	wantCorrupt(t, "Open with a damaged journal", err, path)
}
