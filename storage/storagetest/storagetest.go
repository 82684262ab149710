// Package storagetest is the conformance suite for hakit storage: a Store
// or Backend implementation is done when it passes TestStore or
// TestBackend, in the way an fs.FS passes testing/fstest.TestFS.
//
// The suite checks the contract of package storage as an observer can see
// it through the interface: reads and writes, versions, fencing, key
// validation, concurrency (with a linearizability check of a recorded
// history), large values, many keys, context cancellation, and a
// randomised state-machine test against an in-memory model. It is written
// to run in a few seconds against an in-memory store so that slower
// backends (etcd, a Raft group, a network file system) can run it too.
//
// Every subtest calls open for a fresh, empty store; open should register
// its own cleanup with t.Cleanup.
//
// Backends whose tests drive a store from several processes or hosts can
// record the calls as a []Call and check them with CheckHistory, the
// check the suite's own concurrency test uses. BenchmarkPut measures what
// fencing costs on a Backend. Stores from Fenced reserve the key
// storage.DefaultFenceKey; the suite never uses keys that start with
// "hakit/".
package storagetest

import (
	"testing"

	"github.com/hakit/hakit/storage"
)

// Option adjusts the suite for a backend. Backends should need none; the
// options exist for stores whose every write is expensive.
type Option func(*config)

type config struct {
	scale float64
}

// WithScale multiplies the sizes of the suite's workloads (number of keys,
// writers' rounds, concurrent goroutines' operations, the model test's
// steps per case) by f, which must be in (0, 1]. It never removes a case, and never shrinks a workload below
// what the case needs to be meaningful.
func WithScale(f float64) Option {
	return func(c *config) {
		if f > 0 && f <= 1 {
			c.scale = f
		}
	}
}

func newConfig(opts []Option) config {
	c := config{scale: 1}
	for _, o := range opts {
		o(&c)
	}
	return c
}

// n scales a workload size, never below min.
func (c config) n(full, min int) int {
	v := int(float64(full) * c.scale)
	if v < min {
		return min
	}
	return v
}

// TestStore runs the conformance suite against the Store that open
// returns. Each subtest calls open once and expects an empty store (the
// randomised model test opens a new one after a failing case only).
//
// Beyond the interface's doc comments, the suite holds a Store to these
// rules, which every hakit Store keeps:
//   - a write that fails (stale token, version conflict, cancelled
//     context) changes nothing, and in particular admits no token;
//   - the fence is checked before a compare-and-swap's version, so a
//     stale token gives fence.ErrStale even when the versions match;
//   - a context that is already cancelled makes every call fail with an
//     error matching context.Canceled;
//   - values are copied: changing a slice passed to Put or returned by Get
//     changes nothing stored.
func TestStore(t *testing.T, open func(t *testing.T) storage.Store, opts ...Option) {
	t.Helper()
	c := newConfig(opts)
	tests := []struct {
		name string
		run  func(t *testing.T, s storage.Store, c config)
	}{
		{"CRUD", testCRUD},
		{"EmptyValue", testEmptyValue},
		{"ValuesAreCopied", testValuesCopied},
		{"Versions", testVersions},
		{"CompareAndSwap", testCompareAndSwap},
		{"StaleToken", testStaleToken},
		{"EqualToken", testEqualToken},
		{"ZeroToken", testZeroToken},
		{"InvalidKeys", testInvalidKeys},
		{"OddKeys", testOddKeys},
		{"LargeValues", testLargeValues},
		{"ManyKeys", testManyKeys},
		{"ContextCancelled", testContextCancelled},
		{"ContextCancelledDuringWrite", testContextCancelledDuring},
		{"ConflictingCompareAndSwap", testConflictingCAS},
		{"ConcurrentWriters", testConcurrentWriters},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t, open(t), c)
		})
	}
	t.Run("Model", func(t *testing.T) { testModel(t, open, c) })
}

// TestBackend runs the conformance suite for a plain Backend against the
// Backend that open returns: atomic conditional commits, version order,
// deletes, multi-key atomicity under concurrency, cancellation, and a
// randomised test of multi-key commits against a model. It then
// runs TestStore over storage.Fenced(open(t)), so a Backend that passes
// gives a conforming Store.
func TestBackend(t *testing.T, open func(t *testing.T) storage.Backend, opts ...Option) {
	t.Helper()
	c := newConfig(opts)
	tests := []struct {
		name string
		run  func(t *testing.T, b storage.Backend, c config)
	}{
		{"GetAbsent", testBackendGetAbsent},
		{"Commit", testBackendCommit},
		{"CondsAreAtomic", testBackendCondsAtomic},
		{"Delete", testBackendDelete},
		{"VersionsIncrease", testBackendVersionsIncrease},
		{"ValuesAreCopied", testBackendValuesCopied},
		{"ContextCancelled", testBackendContextCancelled},
		{"ConcurrentMultiKey", testBackendConcurrentMultiKey},
		{"ConcurrentIncrements", testBackendConcurrentIncrements},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t, open(t), c)
		})
	}
	t.Run("Model", func(t *testing.T) { testBackendModel(t, open, c) })
	t.Run("Fenced", func(t *testing.T) {
		TestStore(t, func(t *testing.T) storage.Store { return storage.Fenced(open(t)) }, opts...)
	})
}
