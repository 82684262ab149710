package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/storage"
)

func mustPut(t *testing.T, s storage.Store, tok fence.Token, key string, value []byte) storage.Version {
	t.Helper()
	v, err := s.Put(t.Context(), tok, key, value)
	if err != nil {
		t.Fatalf("Put(token %d, %q): %v", tok, key, err)
	}
	if v == 0 {
		t.Fatalf("Put(token %d, %q) returned version 0", tok, key)
	}
	return v
}

func mustGet(t *testing.T, s interface {
	Get(context.Context, string) (storage.Item, error)
}, key string) storage.Item {
	t.Helper()
	it, err := s.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return it
}

// wantItem checks that key holds value at version v (v 0: any version).
func wantItem(t *testing.T, s interface {
	Get(context.Context, string) (storage.Item, error)
}, key string, value []byte, v storage.Version) {
	t.Helper()
	it := mustGet(t, s, key)
	if !bytes.Equal(it.Value, value) {
		t.Fatalf("Get(%q) = %s, want %s", key, show(it.Value), show(value))
	}
	if v != 0 && it.Version != v {
		t.Fatalf("Get(%q) version = %d, want %d", key, it.Version, v)
	}
}

func wantAbsent(t *testing.T, s interface {
	Get(context.Context, string) (storage.Item, error)
}, key string) {
	t.Helper()
	it, err := s.Get(t.Context(), key)
	if !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Get(%q) = (%s, version %d, %v), want an error matching storage.ErrNotFound", key, show(it.Value), it.Version, err)
	}
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: error %v, want one matching %q", what, err, target)
	}
}

// show prints a value for a failure message without flooding the log.
func show(b []byte) string {
	if len(b) <= 64 {
		return fmt.Sprintf("%q", b)
	}
	return fmt.Sprintf("%q...%q (%d bytes)", b[:32], b[len(b)-8:], len(b))
}
