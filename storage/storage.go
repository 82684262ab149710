// Package storage defines hakit's fenced key-value storage.
//
// A Store is where an active member keeps what must survive a failover:
// checkpoints, state records, the high-water mark of its sink. Every write
// to a Store carries the writer's fencing token, and the store refuses a
// write whose token is smaller than one it has already accepted, so a
// member that lost its lease but still runs can never overwrite what its
// successor wrote.
//
// Backends implement Backend, a plain key-value store with one atomic
// conditional commit; Fenced turns any Backend into a Store. A backend that
// can check the fence natively in one round trip (etcd, the Raft group) may
// implement Store directly; every Store, however built, passes the
// conformance suite in package storagetest.
//
// # Keys and values
//
// A key is a non-empty string of at most MaxKeyLen bytes, valid UTF-8 and
// free of NUL bytes; ValidateKey checks this. Values are opaque bytes; a nil
// and an empty value are the same. Backends may limit the value size (etcd
// refuses requests above its --max-request-bytes, 1.5 MiB by default).
//
// # Versions, and why compare-and-swap
//
// Every stored key has a Version, assigned by the backend at each write and
// never reused for that key, even after a delete; 0 means "absent". The
// conditional write a Store offers is CompareAndSwap on that version. It is
// the smallest primitive that lets a checkpoint advance safely: a member
// reads the checkpoint, decides the new one is ahead of it, and writes it
// only if nothing changed in between. A checkpoint is one record, so no
// multi-key transaction is needed, and every backend (a counter in memory,
// a revision in etcd, an index in Raft) provides versions cheaply.
package storage

import (
	"context"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/hakit/hakit/fence"
)

// MaxKeyLen is the longest key, in bytes, that every Store accepts.
const MaxKeyLen = 512

var (
	// ErrNotFound is returned by Get for a key that does not exist.
	ErrNotFound = errors.New("storage: key not found")
	// ErrConflict is returned when a conditional write's expected version
	// did not match the stored one. Nothing was written.
	ErrConflict = errors.New("storage: version conflict")
	// ErrInvalidKey is wrapped by errors for keys that ValidateKey rejects
	// or that a Store reserves for itself.
	ErrInvalidKey = errors.New("storage: invalid key")
)

// Version identifies one write of one key. Versions of a key increase with
// every write and are never reused; 0 means the key does not exist.
type Version uint64

// Item is a stored value with the version of the write that stored it.
type Item struct {
	Value   []byte
	Version Version
}

// Store is fenced key-value storage. Every write carries the writer's
// fencing token and fails with an error matching fence.ErrStale if a larger
// token was admitted before it; an equal or larger token is admitted, and
// a larger one raises the store's fence for all keys at once. A write that
// returned nil is durable as far as the backend promises (see each
// backend's doc) and is visible to every Get that starts after it returned.
//
// A Store is safe for concurrent use. Reads are not fenced: a deposed
// member may still read, but nothing it writes counts.
type Store interface {
	// Get returns the value and version stored under key, or an error
	// matching ErrNotFound.
	Get(ctx context.Context, key string) (Item, error)
	// Put stores value under key with token t and returns the new version.
	Put(ctx context.Context, t fence.Token, key string, value []byte) (Version, error)
	// CompareAndSwap stores value under key with token t only if the key's
	// current version equals old (0: only if the key is absent). It
	// returns the new version, or an error matching ErrConflict and writes
	// nothing. The fence is checked first: a stale token gives ErrStale
	// even if the versions match.
	CompareAndSwap(ctx context.Context, t fence.Token, key string, old Version, value []byte) (Version, error)
	// Delete removes key with token t. Deleting an absent key is not an
	// error, but the token is still checked and admitted.
	Delete(ctx context.Context, t fence.Token, key string) error
}

// Cond is a precondition of a Backend commit: the current version of Key
// must equal Version (0: the key must be absent).
type Cond struct {
	Key     string
	Version Version
}

// Op is one write of a Backend commit: store Value under Key, or remove
// Key if Delete is set.
type Op struct {
	Key    string
	Value  []byte
	Delete bool
}

// Backend is a plain, unfenced key-value store with one atomic conditional
// commit. It is what a new storage system implements; Fenced adds the
// fencing on top. A Backend must be safe for concurrent use, across
// processes where the storage is shared.
type Backend interface {
	// Get returns the value and version stored under key, or an error
	// matching ErrNotFound.
	Get(ctx context.Context, key string) (Item, error)
	// Commit applies ops atomically if and only if every cond holds at the
	// moment of the commit; otherwise it applies nothing and returns an
	// error matching ErrConflict. Every key that ops write gets the
	// returned version, which is larger than any version the backend has
	// assigned before. Ops name distinct keys.
	Commit(ctx context.Context, conds []Cond, ops []Op) (Version, error)
}

// ValidateKey reports whether key is acceptable to every Store: non-empty,
// at most MaxKeyLen bytes, valid UTF-8, no NUL byte. The error wraps
// ErrInvalidKey and quotes the key.
func ValidateKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: empty key", ErrInvalidKey)
	case len(key) > MaxKeyLen:
		return fmt.Errorf("%w: key of %d bytes exceeds %d", ErrInvalidKey, len(key), MaxKeyLen)
	case !utf8.ValidString(key):
		return fmt.Errorf("%w: key %q is not valid UTF-8", ErrInvalidKey, key)
	}
	for i := 0; i < len(key); i++ {
		if key[i] == 0 {
			return fmt.Errorf("%w: key %q has a NUL byte at %d", ErrInvalidKey, key, i)
		}
	}
	return nil
}
