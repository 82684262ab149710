// Package memstore is an in-process storage backend: a map behind a mutex.
//
// It is for tests, simulations and single-process programs. Nothing
// survives the process, and nothing is shared with another process, so it
// gives no high availability by itself; ha/hatest and the examples use it
// where the storage is not the subject.
package memstore

import (
	"context"
	"fmt"
	"sync"

	"github.com/hakit/hakit/storage"
)

// Backend is an in-memory storage.Backend. Commits are serialised by one
// mutex, so each is atomic and versions come from a single counter: every
// commit's version is one above the previous commit's. Values are copied on
// the way in and out, so callers may reuse their slices.
//
// The zero Backend is not usable; call NewBackend. A Backend is safe for
// concurrent use.
type Backend struct {
	mu      sync.RWMutex
	items   map[string]storage.Item
	version storage.Version // the last version assigned
}

// NewBackend returns an empty Backend.
func NewBackend() *Backend {
	return &Backend{items: make(map[string]storage.Item)}
}

// New returns an empty fenced Store: storage.Fenced over a new Backend.
func New(opts ...storage.Option) storage.Store {
	return storage.Fenced(NewBackend(), opts...)
}

// Get returns a copy of the value stored under key and its version, or an
// error matching storage.ErrNotFound. It fails if ctx is done.
func (b *Backend) Get(ctx context.Context, key string) (storage.Item, error) {
	if err := ctx.Err(); err != nil {
		return storage.Item{}, err
	}
	if err := storage.ValidateKey(key); err != nil {
		return storage.Item{}, err
	}
	b.mu.RLock()
	it, ok := b.items[key]
	b.mu.RUnlock()
	if !ok {
		return storage.Item{}, fmt.Errorf("memstore: get %q: %w", key, storage.ErrNotFound)
	}
	return storage.Item{Value: clone(it.Value), Version: it.Version}, nil
}

// Commit applies ops if every cond holds, all under one lock; see
// storage.Backend. It fails without applying anything if ctx is done when
// it is called, if a key is invalid, or if two ops name the same key.
func (b *Backend) Commit(ctx context.Context, conds []storage.Cond, ops []storage.Op) (storage.Version, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := storage.CheckCommit(conds, ops); err != nil {
		return 0, fmt.Errorf("memstore: %w", err)
	}
	// Copy before taking the lock: the values may be large.
	vals := make([][]byte, len(ops))
	for i, op := range ops {
		if !op.Delete {
			vals[i] = clone(op.Value)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range conds {
		if cur := b.items[c.Key].Version; cur != c.Version {
			return 0, fmt.Errorf("memstore: key %q is at version %d, commit expects %d: %w", c.Key, cur, c.Version, storage.ErrConflict)
		}
	}
	b.version++
	for i, op := range ops {
		if op.Delete {
			delete(b.items, op.Key)
			continue
		}
		b.items[op.Key] = storage.Item{Value: vals[i], Version: b.version}
	}
	return b.version, nil
}

// clone copies b; the copy of an empty value is empty and non-nil, so a
// stored empty value never looks like a missing one.
func clone(b []byte) []byte {
	out := make([]byte, len(b))
	copy(out, b)
	return out
}
