package filestore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hakit/hakit/storage"
)

// TestLockExcludesOtherBackends holds the lock through one Backend and
// checks that another Backend on the directory (another process, as far
// as flock is concerned: a separate open file description) waits for it,
// gives up when its context ends, and proceeds once the lock is free.
func TestLockExcludesOtherBackends(t *testing.T) {
	dir := newDir(t)
	holder, waiter := mustOpen(t, dir), mustOpen(t, dir)
	if err := holder.lock.lock(t.Context(), true); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Millisecond)
	defer cancel()
	_, err := waiter.Commit(ctx, nil, []storage.Op{{Key: "k", Value: []byte("x")}})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Commit while another Backend holds the lock: %v, want context.DeadlineExceeded", err)
	}
	_, err = waiter.Get(ctx, "k")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get while another Backend holds the lock exclusively: %v, want context.DeadlineExceeded", err)
	}

	done := make(chan error, 1)
	go func() {
		_, err := waiter.Commit(t.Context(), nil, []storage.Op{{Key: "k", Value: []byte("x")}})
		done <- err
	}()
	holder.lock.unlock()
	if err := <-done; err != nil {
		t.Fatalf("Commit after the lock was released: %v", err)
	}
	if _, err := holder.Get(t.Context(), "k"); err != nil {
		t.Fatal(err)
	}
}

func TestMaxHold(t *testing.T) {
	dir := newDir(t)
	normal := mustOpen(t, dir)
	b, err := Open(t.Context(), dir, WithMaxHold(time.Nanosecond))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, ops := range [][]storage.Op{
		{{Key: "a", Value: []byte("x")}},
		{{Key: "a", Value: []byte("x")}, {Key: "b", Value: []byte("x")}},
		{{Key: "a", Delete: true}},
	} {
		if _, err := b.Commit(t.Context(), nil, ops); !errors.Is(err, ErrHeldTooLong) {
			t.Fatalf("Commit with a 1ns maximum hold: %v, want ErrHeldTooLong", err)
		}
	}
	for _, k := range []string{"a", "b"} {
		if _, err := normal.Get(t.Context(), k); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("Get(%q) after commits refused for holding too long: %v", k, err)
		}
	}
	mustCommit(t, normal, nil, []storage.Op{{Key: "a", Value: []byte("y")}})
}
