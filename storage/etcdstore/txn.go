package etcdstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/lease"
	"github.com/hakit/hakit/storage"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// write runs a fenced write. With f the fence record, t the writer's
// token and w the write, the general transaction is
//
//	if value(f) < EncodeFence(t):  get f
//	else:                          w; f := EncodeFence(t)
//
// Records are complemented tokens, so "value(f) < EncodeFence(t)" holds
// exactly for records of tokens above t, and for every truncation or
// extension of one (see EncodeFence): damage never lets a stale writer
// through. etcd fails every value comparison on a missing key, so a
// missing record (the first write to a prefix) takes the else branch and
// is created by the update, in the same round trip. The value appears once
// in the request, so a fenced write accepts values as large as a plain one.
//
// Once the Store has seen the record hold t (its own last write did it),
// it sends the steady-state transaction instead:
//
//	if value(f) == EncodeFence(t):  w
//	else:                           get f
//
// which saves rewriting the record on every write. Equality is exact, so
// this is safe whatever the hint says; when the record has changed, a
// larger token fails the write as stale at once, and anything else (the
// record deleted or damaged by hand) falls back to the general
// transaction: a second round trip that normal operation never takes. A
// nested transaction ("if value(f) != e { f := e }") would also avoid the
// rewrite in one transaction, but measured against a real etcd it costs
// more than the rewrite.
//
// For a compare-and-swap, w (and the update) sit in a nested transaction
// on the key's ModRevision, so a version mismatch writes neither. A bound
// Store wraps every transaction in a comparison of the leader key's
// create revision.
func (s *Store) write(ctx context.Context, verb string, t fence.Token, key string, op clientv3.Op, cas *clientv3.Cmp) (storage.Version, error) {
	fail := func(err error) (storage.Version, error) {
		return 0, fmt.Errorf("etcdstore: %s %q: %w", verb, key, err)
	}
	if t == 0 {
		return fail(fence.ErrNoToken)
	}
	if err := storage.ValidateKey(key); err != nil {
		return 0, fmt.Errorf("etcdstore: %s: %w", verb, err)
	}
	if s.bound && s.leaderRev < 1 {
		return fail(fmt.Errorf("bound to leader key %q at create revision %d, which no key can have: %w",
			s.leaderKey, s.leaderRev, lease.ErrLost))
	}

	fk, rec := s.fenceKey, string(EncodeFence(t))
	getFence := []clientv3.Op{clientv3.OpGet(fk)}
	// apply returns w, followed by the fence update if raise.
	apply := func(raise bool) []clientv3.Op {
		ops := []clientv3.Op{op}
		if raise {
			ops = append(ops, clientv3.OpPut(fk, rec))
		}
		if cas == nil {
			return ops
		}
		return []clientv3.Op{clientv3.OpTxn([]clientv3.Cmp{*cas}, ops,
			[]clientv3.Op{clientv3.OpGet(s.prefix+key, clientv3.WithKeysOnly())})}
	}

	if s.hint.Load() == uint64(t) {
		r, rev, err := s.commit(ctx,
			[]clientv3.Cmp{clientv3.Compare(clientv3.Value(fk), "=", rec)}, apply(false), getFence)
		if err != nil {
			return fail(err)
		}
		if r.Succeeded {
			return s.applied(t, r, rev, cas != nil, fail)
		}
		if v, ok := fenceValue(r); ok {
			if high, err := DecodeFence(v); err == nil && high > t {
				return fail(fence.Stale(t, high))
			}
		}
	}

	r, rev, err := s.commit(ctx,
		[]clientv3.Cmp{clientv3.Compare(clientv3.Value(fk), "<", rec)}, getFence, apply(true))
	if err != nil {
		return fail(err)
	}
	if r.Succeeded {
		v, ok := fenceValue(r)
		if !ok {
			return fail(errMalformed)
		}
		return fail(s.refused(t, v))
	}
	return s.applied(t, r, rev, cas != nil, fail)
}

// applied interprets the branch that ran w: for a compare-and-swap, the
// nested transaction may have found another version.
func (s *Store) applied(t fence.Token, r *pb.TxnResponse, rev int64, cas bool,
	fail func(error) (storage.Version, error)) (storage.Version, error) {
	if cas {
		inner := nestedOf(r)
		if inner == nil {
			return fail(errMalformed)
		}
		if !inner.Succeeded {
			var cur int64
			if rr := rangeOf(inner); rr != nil && len(rr.Kvs) > 0 {
				cur = rr.Kvs[0].ModRevision
			}
			return fail(fmt.Errorf("%w: the key is at version %d", storage.ErrConflict, cur))
		}
	}
	// The record holds t now, or a larger token written since.
	s.hint.Store(uint64(t))
	return storage.Version(rev), nil
}

// fenceValue returns the fence record read by the branch r took, and
// whether there is one.
func fenceValue(r *pb.TxnResponse) ([]byte, bool) {
	rr := rangeOf(r)
	if rr == nil || len(rr.Kvs) == 0 {
		return nil, false
	}
	return rr.Kvs[0].Value, true
}

// commit runs one transaction, inside the leader-key comparison if s is
// bound, and returns the response of the unbound transaction and the
// revision of the store after it.
func (s *Store) commit(ctx context.Context, cmps []clientv3.Cmp, then, els []clientv3.Op) (*pb.TxnResponse, int64, error) {
	txn := s.cli.Txn(ctx)
	if s.bound {
		txn = txn.If(clientv3.Compare(clientv3.CreateRevision(s.leaderKey), "=", s.leaderRev)).
			Then(clientv3.OpTxn(cmps, then, els)).
			Else(clientv3.OpGet(s.leaderKey, clientv3.WithKeysOnly()))
	} else {
		txn = txn.If(cmps...).Then(then...).Else(els...)
	}
	resp, err := txn.Commit()
	if err != nil {
		return nil, 0, err
	}
	r := (*pb.TxnResponse)(resp)
	if s.bound {
		if !r.Succeeded {
			return nil, 0, s.lost(rangeOf(r))
		}
		if r = nestedOf(r); r == nil {
			return nil, 0, errMalformed
		}
	}
	return r, resp.Header.Revision, nil
}

// errMalformed reports a response that does not have the shape of the
// transaction sent, which only a broken or foreign server produces.
var errMalformed = errors.New("etcdstore: transaction response does not match the request")

// refused explains why the fence record v refused token t: a larger token,
// or damage.
func (s *Store) refused(t fence.Token, v []byte) error {
	high, err := DecodeFence(v)
	if err != nil {
		return s.corrupt(v, err.Error())
	}
	if high <= t { // cannot be: etcd compared the record as above t
		return s.corrupt(v, fmt.Sprintf("it holds token %d, which etcd did not admit for %d", high, t))
	}
	return fence.Stale(t, high)
}

// corrupt names the fence record and what is wrong with it.
func (s *Store) corrupt(v []byte, why string) error {
	shown := v
	if len(shown) > 16 {
		shown = shown[:16]
	}
	return fmt.Errorf("%w %q (%d bytes, starting %x): %s", ErrCorruptFence, s.fenceKey, len(v), shown, why)
}

// lost builds the error for a failed leader-key comparison.
func (s *Store) lost(rr *pb.RangeResponse) error {
	if rr == nil || len(rr.Kvs) == 0 {
		return fmt.Errorf("leader key %q is gone (its lease expired or was revoked): %w", s.leaderKey, lease.ErrLost)
	}
	return fmt.Errorf("leader key %q was re-created at revision %d, not %d (a later term): %w",
		s.leaderKey, rr.Kvs[0].CreateRevision, s.leaderRev, lease.ErrLost)
}

// nestedOf returns the response of the nested transaction that is the
// first operation of the branch r took, or nil.
func nestedOf(r *pb.TxnResponse) *pb.TxnResponse {
	if r == nil || len(r.Responses) == 0 {
		return nil
	}
	return r.Responses[0].GetResponseTxn()
}

// rangeOf returns the response of the Get that is the first operation of
// the branch r took, or nil.
func rangeOf(r *pb.TxnResponse) *pb.RangeResponse {
	if r == nil || len(r.Responses) == 0 {
		return nil
	}
	return r.Responses[0].GetResponseRange()
}
