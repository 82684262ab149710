package main

import (
	"context"
	"sync"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/lease"
	"github.com/hakit/hakit/storage"
	"github.com/hakit/hakit/storage/etcdstore"
)

// On etcd the fence alone stops a deposed writer only once its successor
// has written. Binding each write to the writer's leader key closes that
// gap: the write fails, in the same transaction, as soon as the lease
// behind the key is gone (etcdstore's Bind). The Node hands the work only
// the token, so termElector remembers the Term of the token and termStore
// binds each write to the Term its token belongs to.

// termElector is an Elector that remembers the Term its last Campaign won.
type termElector struct {
	lease.Elector
	mu   sync.Mutex
	last etcdstore.LeaderKeyHolder
	tok  fence.Token
}

// Campaign campaigns through the wrapped Elector and remembers the Term.
func (e *termElector) Campaign(ctx context.Context) (lease.Term, error) {
	t, err := e.Elector.Campaign(ctx)
	if err != nil {
		return t, err
	}
	if h, ok := t.(etcdstore.LeaderKeyHolder); ok {
		e.mu.Lock()
		e.last, e.tok = h, t.Token()
		e.mu.Unlock()
	}
	return t, nil
}

// term returns the Term with token t, if it is the last one won.
func (e *termElector) term(t fence.Token) (etcdstore.LeaderKeyHolder, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.last, e.last != nil && e.tok == t
}

// termStore is an etcdstore.Store whose writes are bound to the Term of
// their token when this member won it. Writes with any other token (none
// are expected) are fenced only.
type termStore struct {
	base *etcdstore.Store
	el   *termElector
}

func (s *termStore) bound(t fence.Token) *etcdstore.Store {
	if h, ok := s.el.term(t); ok {
		return s.base.BindTerm(h)
	}
	return s.base
}

func (s *termStore) Get(ctx context.Context, key string) (storage.Item, error) {
	return s.base.Get(ctx, key)
}

func (s *termStore) Put(ctx context.Context, t fence.Token, key string, v []byte) (storage.Version, error) {
	return s.bound(t).Put(ctx, t, key, v)
}

func (s *termStore) CompareAndSwap(ctx context.Context, t fence.Token, key string, old storage.Version, v []byte) (storage.Version, error) {
	return s.bound(t).CompareAndSwap(ctx, t, key, old, v)
}

func (s *termStore) Delete(ctx context.Context, t fence.Token, key string) error {
	return s.bound(t).Delete(ctx, t, key)
}
