package etcdstore

import (
	"context"
	"fmt"
	"strings"

	"github.com/hakit/hakit/storage"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ClockKey is the suffix of the key a Backend writes, at prefix+ClockKey,
// when a commit deletes only keys that do not exist: such a delete would
// not move etcd's revision, and every commit must return a version larger
// than all before it. Like FenceKey it cannot collide with a stored key.
const ClockKey = "\x00clock"

// Backend is a plain storage.Backend in etcd, for storage.Fenced and for
// tests that compare fenced with unfenced writes. Each Commit is one etcd
// transaction; versions are ModRevisions, as for Store. It is safe for
// concurrent use.
type Backend struct {
	cli    *clientv3.Client
	prefix string
}

var _ storage.Backend = (*Backend)(nil)

// NewBackend returns a Backend that keeps key k under the etcd key
// prefix+k. It does not contact etcd, and the client stays the caller's.
// Do not use the prefix of a Store: Fenced keeps its own fence record
// (storage.DefaultFenceKey), which a Store would not check.
func NewBackend(cli *clientv3.Client, prefix string) *Backend {
	return &Backend{cli: cli, prefix: prefix}
}

// Get returns the value stored under key and its version, or an error
// matching storage.ErrNotFound. The read is linearizable.
func (b *Backend) Get(ctx context.Context, key string) (storage.Item, error) {
	return get(ctx, b.cli, b.prefix, key)
}

// Commit applies ops in one etcd transaction if every cond holds (the
// key's ModRevision equals the expected version; 0 requires the key to be
// absent). Otherwise it writes nothing and returns an error matching
// storage.ErrConflict that names each key whose version differed. The
// returned version is the revision of the transaction, which every key
// that ops wrote now has; a commit that only deletes absent keys also
// writes prefix+ClockKey so that it still gets a new revision.
func (b *Backend) Commit(ctx context.Context, conds []storage.Cond, ops []storage.Op) (storage.Version, error) {
	if err := storage.CheckCommit(conds, ops); err != nil {
		return 0, fmt.Errorf("etcdstore: %w", err)
	}
	cmps := make([]clientv3.Cmp, len(conds))
	gets := make([]clientv3.Op, len(conds))
	for i, c := range conds {
		k := b.prefix + c.Key
		cmps[i] = clientv3.Compare(clientv3.ModRevision(k), "=", int64(c.Version))
		gets[i] = clientv3.OpGet(k, clientv3.WithKeysOnly())
	}
	writes := make([]clientv3.Op, 0, len(ops)+1)
	var absent []clientv3.Cmp // "every deleted key is absent"
	onlyDeletes := true
	for _, op := range ops {
		k := b.prefix + op.Key
		if op.Delete {
			writes = append(writes, clientv3.OpDelete(k))
			absent = append(absent, clientv3.Compare(clientv3.CreateRevision(k), "=", 0))
		} else {
			writes = append(writes, clientv3.OpPut(k, string(op.Value)))
			onlyDeletes = false
		}
	}
	if onlyDeletes && len(absent) > 0 {
		// Deleting only absent keys would not move etcd's revision, yet
		// the commit must return a version above every earlier one.
		writes = append(writes, clientv3.OpTxn(absent,
			[]clientv3.Op{clientv3.OpPut(b.prefix+ClockKey, "")}, nil))
	}
	resp, err := b.cli.Txn(ctx).If(cmps...).Then(writes...).Else(gets...).Commit()
	if err != nil {
		return 0, fmt.Errorf("etcdstore: commit of %d ops on %s: %w", len(ops), keyList(ops), err)
	}
	if resp.Succeeded {
		return storage.Version(resp.Header.Revision), nil
	}
	var diffs []string
	for i, c := range conds {
		var cur int64
		if i < len(resp.Responses) {
			if rr := resp.Responses[i].GetResponseRange(); rr != nil && len(rr.Kvs) > 0 {
				cur = rr.Kvs[0].ModRevision
			}
		}
		if cur != int64(c.Version) {
			diffs = append(diffs, fmt.Sprintf("%q is at version %d, not %d", c.Key, cur, c.Version))
		}
	}
	if len(diffs) == 0 { // cannot be: the reads ran in the failed transaction
		diffs = append(diffs, "a condition failed")
	}
	return 0, fmt.Errorf("etcdstore: commit: %w: %s", storage.ErrConflict, strings.Join(diffs, "; "))
}

func keyList(ops []storage.Op) string {
	keys := make([]string, len(ops))
	for i, op := range ops {
		keys[i] = fmt.Sprintf("%q", op.Key)
	}
	return "[" + strings.Join(keys, " ") + "]"
}
