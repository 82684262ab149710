// Package etcdstore keeps hakit's fenced storage in etcd.
//
// New returns a Store that checks the fence natively: every write is one
// etcd transaction that compares the fence record with the writer's token,
// raises the fence if the token is larger, and applies the write, all in
// one round trip and one revision. (A write takes a second round trip
// only after the record was deleted or damaged by hand.) NewBackend
// returns a plain storage.Backend for storage.Fenced, for code that wants
// the generic wrapper; the two keep different fence records and must not
// be mixed on the same prefix.
//
// # Layout
//
// A Store or Backend made with prefix p keeps key k under the etcd key p+k.
// The Store's fence record is the etcd key p+FenceKey; FenceKey contains a
// NUL byte, which storage.ValidateKey refuses in keys, so it cannot collide
// with a stored key. The record holds the highest admitted token in the
// form of EncodeFence: 8 bytes whose byte-wise order, the order etcd
// compares values in, is the reverse of the tokens' order, and in which
// damage (truncation, extension) can only make the token look larger.
// A damaged record that could hide a token above the writer's fails the
// write with ErrCorruptFence. A missing record means no token was ever
// admitted: deleting it by hand lifts the fence, as deleting the data
// would.
//
// Prefixes of different Stores must not be prefixes of one another (say
// "app/" and "app/x"), or their keys overlap.
//
// # Versions
//
// A key's storage.Version is its etcd ModRevision: the cluster revision of
// the write that stored it. Revisions only grow, so versions are never
// reused, not even after a delete.
//
// # Durability
//
// A write that returned nil was committed by a quorum of the etcd cluster
// (etcd's own guarantee), and Get is linearizable. A value is limited by
// etcd's request size limit (--max-request-bytes, 1.5 MiB by default) less
// the key and a few dozen bytes of transaction.
//
// # Binding writes to a term
//
// Fencing stops a deposed writer once its successor has written. Bind
// closes the gap before that: a bound Store also compares the create
// revision of the writer's leader key, so its writes fail with an error
// matching lease.ErrLost as soon as the lease behind that key has expired
// or been revoked, even if no successor has written yet.
package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/lease"
	"github.com/hakit/hakit/storage"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// FenceKey is the suffix of the Store's fence record: it lives at the etcd
// key prefix+FenceKey. The NUL byte keeps it apart from every valid key.
const FenceKey = "\x00fence"

// EncodeFence returns the fence record of token t: the bitwise complement
// of t, 8 bytes big endian. Byte-wise, a record of a larger token sorts
// lower, so a write with token t is stale exactly when "record <
// EncodeFence(t)", one comparison in etcd. The complement is what makes
// that safe against damage: a truncated record is a prefix of the true one
// and sorts below it, that is as an even larger token, and an extended
// record of a token above t still sorts below EncodeFence(t), since the
// two differ within their first 8 bytes. So no damaged record of a token
// above t admits t. (With plain big-endian tokens, a truncated record of a
// larger token would pass as a smaller one.)
func EncodeFence(t fence.Token) []byte { return (^t).Bytes() }

// DecodeFence returns the token held by a fence record. Any length other
// than 8 bytes is an error, never token 0.
func DecodeFence(b []byte) (fence.Token, error) {
	if len(b) != fence.EncodedLen {
		return 0, fmt.Errorf("fence record has %d bytes, want %d", len(b), fence.EncodedLen)
	}
	t, err := fence.Decode(b)
	if err != nil {
		return 0, err
	}
	if t = ^t; t == 0 {
		return 0, fmt.Errorf("fence record %x holds token 0, which belongs to no term", b)
	}
	return t, nil
}

// ErrCorruptFence is wrapped by the error of a write that found the fence
// record in a form no Store writes (for example of the wrong length). The
// write is refused: a damaged fence is never read as "no fence".
var ErrCorruptFence = errors.New("etcdstore: corrupt fence record")

// Store is a storage.Store in etcd that checks the fence in the same
// transaction as each write. It is safe for concurrent use, by any number
// of goroutines and processes sharing the prefix.
type Store struct {
	cli      *clientv3.Client
	prefix   string
	fenceKey string

	// hint is the token this Store last saw in the fence record; see
	// write. It only chooses between two transactions that are both safe,
	// so a wrong hint costs a round trip, never a wrong answer. Bind's
	// copies share it.
	hint *atomic.Uint64

	// bound is set on a Store returned by Bind.
	bound     bool
	leaderKey string
	leaderRev int64
}

var (
	_ storage.Store    = (*Store)(nil)
	_ lease.TermBinder = (*Store)(nil)
)

// New returns a Store that keeps its keys and fence record under prefix in
// the etcd cluster that cli talks to. It does not contact etcd. The client
// stays the caller's: closing it is the caller's job.
func New(cli *clientv3.Client, prefix string) *Store {
	return &Store{cli: cli, prefix: prefix, fenceKey: prefix + FenceKey, hint: new(atomic.Uint64)}
}

// Bind returns a Store over the same data whose writes also require that
// the etcd key leaderKey exists with create revision createRevision: the
// leader key of the writer's term, which carries the term's lease (for the
// etcd elector, the Term exposes both). When the lease expires or is
// revoked, etcd deletes the key, and every later write of the bound Store
// fails with an error that matches lease.ErrLost and names the key, in the
// same transaction that would have written, so no write can land after
// etcd has ended the lease. (etcd's leader looks for expired leases about
// every 500 ms, so the key can outlive the TTL by that much; the etcd
// elector's own deadline ends the term before the TTL, which covers the
// gap.) Reads are not bound.
//
// leaderKey is a full etcd key (no prefix is added). A createRevision
// below 1 belongs to no key; writes then fail without contacting etcd.
func (s *Store) Bind(leaderKey string, createRevision int64) *Store {
	b := *s
	b.bound, b.leaderKey, b.leaderRev = true, leaderKey, createRevision
	return &b
}

// LeaderKeyHolder is what BindTerm needs of a term of leadership: the
// etcd key that holds it and that key's create revision. The etcd
// elector's Term (package lease/etcdlease) implements it.
type LeaderKeyHolder interface {
	LeaderKey() string
	CreateRevision() int64
}

// BindTerm is Bind(term.LeaderKey(), term.CreateRevision()): writes of
// the returned Store fail with lease.ErrLost once term's lease is gone.
// Use it with the token of the same term. Inside an ha.Node's work, which
// receives the lease.Term, that is
//
//	holder, ok := term.(etcdstore.LeaderKeyHolder) // an etcdlease Term
//	bound := store.BindTerm(holder)
//
// or, with a type check done for you, ForTerm.
func (s *Store) BindTerm(term LeaderKeyHolder) *Store {
	return s.Bind(term.LeaderKey(), term.CreateRevision())
}

// ForTerm is BindTerm for a lease.Term of any elector: a term that holds
// an etcd leader key (etcdlease's) gives the bound Store, any other an
// error that names its type. It makes Store a lease.TermBinder, so that
// replicate.Stream.RunTerm binds its checkpoint writes to the term.
func (s *Store) ForTerm(term lease.Term) (storage.Store, error) {
	h, ok := term.(LeaderKeyHolder)
	if !ok {
		return nil, fmt.Errorf("etcdstore: bind to the term with token %d: a %T holds no etcd leader key; bind only terms of an etcd elector (lease/etcdlease)", term.Token(), term)
	}
	return s.BindTerm(h), nil
}

// Get returns the value stored under key and its version, or an error
// matching storage.ErrNotFound. The read is linearizable.
func (s *Store) Get(ctx context.Context, key string) (storage.Item, error) {
	return get(ctx, s.cli, s.prefix, key)
}

func get(ctx context.Context, cli *clientv3.Client, prefix, key string) (storage.Item, error) {
	if err := storage.ValidateKey(key); err != nil {
		return storage.Item{}, fmt.Errorf("etcdstore: get: %w", err)
	}
	resp, err := cli.Get(ctx, prefix+key)
	if err != nil {
		return storage.Item{}, fmt.Errorf("etcdstore: get %q: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return storage.Item{}, fmt.Errorf("etcdstore: get %q: %w", key, storage.ErrNotFound)
	}
	kv := resp.Kvs[0]
	return storage.Item{Value: kv.Value, Version: storage.Version(kv.ModRevision)}, nil
}

// Put stores value under key with token t and returns the new version. It
// fails with an error matching fence.ErrStale if a larger token was
// admitted before, and admits t otherwise.
func (s *Store) Put(ctx context.Context, t fence.Token, key string, value []byte) (storage.Version, error) {
	return s.write(ctx, "put", t, key, clientv3.OpPut(s.prefix+key, string(value)), nil)
}

// CompareAndSwap stores value under key with token t only if the key's
// version is old (0: only if it is absent). The fence is checked first: a
// stale token gives fence.ErrStale whatever the version. A version
// mismatch gives an error matching storage.ErrConflict that names the
// key's current version, and neither the key nor the fence changes.
func (s *Store) CompareAndSwap(ctx context.Context, t fence.Token, key string, old storage.Version, value []byte) (storage.Version, error) {
	cmp := clientv3.Compare(clientv3.ModRevision(s.prefix+key), "=", int64(old))
	return s.write(ctx, "compare-and-swap", t, key, clientv3.OpPut(s.prefix+key, string(value)), &cmp)
}

// Delete removes key with token t. Deleting an absent key is not an error;
// the token is checked and admitted either way.
func (s *Store) Delete(ctx context.Context, t fence.Token, key string) error {
	_, err := s.write(ctx, "delete", t, key, clientv3.OpDelete(s.prefix+key), nil)
	return err
}
