package etcdlease

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hakit/hakit/lease"
)

// ErrHolding is returned by Campaign while this member already holds a
// Term of the election.
var ErrHolding = errors.New("etcdlease: already holding a term")

// errLapsed marks a campaign whose own lease or key went away before it
// won; Campaign starts over with a new lease.
var errLapsed = errors.New("etcdlease: campaign lease lapsed")

// Elector is one member's handle on an election kept in etcd. It
// implements lease.Elector; see the package doc for when a Term's Done
// closes. It is safe for concurrent use. Campaigns of one Elector are
// serialised, and it holds at most one Term at a time.
type Elector struct {
	cfg    Config
	c      *clientv3.Client
	log    *slog.Logger
	record []byte

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
	sem    chan struct{} // one Campaign at a time
	xfer   chan struct{} // one Transfer at a time

	mu     sync.Mutex
	closed bool
	term   *Term

	closeOnce sync.Once
	closeErr  error
}

var _ lease.Elector = (*Elector)(nil)

// New validates cfg, fills in its defaults and returns an Elector. It
// makes no request to etcd.
func New(cfg Config) (*Elector, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Elector{
		cfg:    cfg,
		c:      cfg.Client,
		log:    cfg.Logger.With("member", cfg.ID, "prefix", cfg.Prefix),
		record: encodeRecord(cfg.ID, cfg.Addr),
		ctx:    ctx,
		cancel: cancel,
		sem:    make(chan struct{}, 1),
		xfer:   make(chan struct{}, 1),
	}, nil
}

// Config returns the Elector's configuration with every default filled in.
func (e *Elector) Config() Config { return e.cfg }

// Campaign blocks until this member leads the election and returns its
// Term, which is a *Term. It returns an error when ctx ends (wrapping
// ctx.Err()), when the Elector is closed (lease.ErrClosed), when this
// member already holds a Term (ErrHolding), or when etcd refuses a
// request for good (permission denied, say). While etcd is unavailable it
// keeps trying, in its place in line as long as its lease lasts; a
// campaign whose lease lapses while it waits (the link was cut for longer
// than the TTL) starts over with a new lease. On error nothing of the
// campaign is left in etcd, unless etcd was unreachable, in which case
// its lease expires within the TTL.
func (e *Elector) Campaign(ctx context.Context) (lease.Term, error) {
	select {
	case e.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("etcdlease: member %q: campaign: %w", e.cfg.ID, ctx.Err())
	case <-e.ctx.Done():
		return nil, lease.ErrClosed
	}
	defer func() { <-e.sem }()
	if t := e.current(); t != nil {
		return nil, fmt.Errorf("%w: member %q holds the term with token %d", ErrHolding, e.cfg.ID, t.Token())
	}

	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(e.ctx, cancel)()
	for {
		t, err := e.campaignOnce(cctx)
		switch {
		case err == nil:
			e.mu.Lock()
			if e.closed {
				e.mu.Unlock()
				rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.TTL)
				defer rcancel()
				_ = t.Resign(rctx)
				return nil, lease.ErrClosed
			}
			e.term = t
			e.mu.Unlock()
			e.log.Info("etcdlease: elected", "token", t.Token(), "key", t.key)
			return t, nil
		case e.ctx.Err() != nil:
			return nil, lease.ErrClosed
		case ctx.Err() != nil:
			return nil, fmt.Errorf("etcdlease: member %q: campaign: %w", e.cfg.ID, ctx.Err())
		case errors.Is(err, errLapsed):
			e.log.Warn("etcdlease: campaign lease lapsed; starting over", "err", err)
		case transient(err):
			e.log.Warn("etcdlease: etcd unavailable during the campaign; starting over", "err", err)
			e.pause(cctx) // if cctx ends, the next round returns its error
		default:
			return nil, err
		}
	}
}

// pause waits a short while before a retry, on the Elector's clock. It
// reports false if ctx ended first.
func (e *Elector) pause(ctx context.Context) bool {
	t := e.cfg.Clock.NewTimer(min(e.cfg.TTL/10, 250*time.Millisecond))
	defer t.Stop()
	select {
	case <-t.C():
		return true
	case <-ctx.Done():
		return false
	}
}

// transient reports whether err says etcd is unreachable or between
// leaders for now, so that the same request may succeed later.
func transient(err error) bool {
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		return ee.Code() == codes.Unavailable
	}
	if s, ok := status.FromError(err); ok {
		return s.Code() == codes.Unavailable
	}
	return false
}

// current returns the Term this member holds, or nil.
func (e *Elector) current() *Term {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.term != nil && e.term.k.Err() == nil {
		return e.term
	}
	return nil
}

// campaignOnce runs one campaign with one lease.
func (e *Elector) campaignOnce(ctx context.Context) (*Term, error) {
	sent := e.cfg.Clock.Now()
	g, err := e.c.Grant(ctx, int64(e.cfg.TTL/time.Second))
	if err != nil {
		return nil, fmt.Errorf("etcdlease: member %q: grant lease: %w", e.cfg.ID, err)
	}
	granted := time.Duration(g.TTL) * time.Second
	if granted != e.cfg.TTL {
		e.log.Warn("etcdlease: etcd granted a different TTL than asked; using it", "asked", e.cfg.TTL, "granted", granted)
	}
	k := newKeeper(e.ctx, e.cfg, g.ID, granted, sent)
	won := false
	defer func() {
		if won {
			return
		}
		// Revoke the campaign's lease so that it leaves nothing behind.
		// Wait a keepalive interval at most, so that a cancelled
		// Campaign returns promptly even over a cut link; the keeper
		// goes on trying in the background until the lease would have
		// expired anyway.
		k.end(fmt.Errorf("%w: member %q: campaign ended", lease.ErrResigned, e.cfg.ID))
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), k.interval)
		defer cancel()
		if err := k.release(rctx); err != nil {
			e.log.Warn("etcdlease: could not revoke the lease of an abandoned campaign yet; retrying in the background", "err", err)
		}
	}()
	if !e.spawn(k.run) {
		return nil, lease.ErrClosed
	}

	// Every request below also ends when the lease lapses.
	kctx, kcancel := context.WithCancel(ctx)
	defer kcancel()
	defer context.AfterFunc(k.ctx, kcancel)()
	lapsed := func(err error) error {
		if kerr := k.Err(); kerr != nil && ctx.Err() == nil {
			return fmt.Errorf("%w: %w", errLapsed, kerr)
		}
		return err
	}

	key := fmt.Sprintf("%s%016x", e.cfg.Prefix, int64(g.ID))
	rev, err := e.putKey(kctx, key, g.ID)
	if err != nil {
		return nil, lapsed(err)
	}

	// Wait until no key older than ours is left, checking in the same
	// transaction that ours is still there and whether a handover names
	// another member (see the package doc, "Transfer").
	hkey := handoverKey(e.cfg.Prefix)
	for yields := 1; ; {
		older := append(clientv3.WithLastCreate(), clientv3.WithPrefix(), clientv3.WithMaxCreateRev(rev-1))
		tr, err := e.c.Txn(kctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", rev)).
			Then(clientv3.OpGet(e.cfg.Prefix, older...), clientv3.OpGet(hkey)).
			Commit()
		if err != nil {
			if transient(err) && k.Err() == nil && e.pause(kctx) {
				continue // our key and our place in line survive a short outage
			}
			return nil, lapsed(fmt.Errorf("etcdlease: member %q: read election %q: %w", e.cfg.ID, e.cfg.Prefix, err))
		}
		if !tr.Succeeded {
			return nil, fmt.Errorf("%w: member %q: campaign key %q was deleted", errLapsed, e.cfg.ID, key)
		}
		seen := tr.Header.Revision
		kvs := tr.Responses[0].GetResponseRange().Kvs
		hkvs := tr.Responses[1].GetResponseRange().Kvs
		h, handing := e.liveHandover(hkvs)
		if handing && h.To != e.cfg.ID {
			// The lease is being handed to h.To: give way if it waits
			// behind us, so that it is first in line when the holder
			// resigns; if it does not wait at all and nobody is ahead,
			// hold off until the handover ends or a campaigner arrives.
			behind, err := e.waitingAfter(kctx, h.To, rev)
			if err != nil {
				return nil, lapsed(err)
			}
			switch {
			case behind:
				e.log.Debug("etcdlease: giving way to the member the lease is handed to", "key", key, "to", h.To)
				if key, rev, err = e.yield(kctx, key, rev, g.ID, yields); err != nil {
					return nil, lapsed(err)
				}
				yields++
				continue
			case len(kvs) == 0:
				e.log.Debug("etcdlease: holding off while the lease is handed to a member that is not waiting", "to", h.To)
				err := waitAny(kctx, e.c, e.changedSince(hkey, hkvs, "", 0, seen),
					watchOn{key: hkey, puts: true, delete: true},
					watchOn{key: e.cfg.Prefix, prefix: true, puts: true})
				if err != nil {
					return nil, lapsed(fmt.Errorf("etcdlease: member %q: watch %q: %w", e.cfg.ID, hkey, err))
				}
				continue
			}
		}
		if len(kvs) == 0 {
			if !k.alive() {
				return nil, fmt.Errorf("%w: member %q: deadline passed while winning", errLapsed, e.cfg.ID)
			}
			won = true
			t := e.newTerm(k, key, rev, seen)
			if handing {
				e.clearHandover(kctx, hkvs[0])
			}
			return t, nil
		}
		prev := string(kvs[0].Key)
		e.log.Debug("etcdlease: waiting for the key before ours", "key", key, "waiting_for", prev)
		// Also wake when a handover is written, to give way in time.
		err = waitAny(kctx, e.c, e.changedSince(hkey, hkvs, prev, kvs[0].CreateRevision, 0),
			watchOn{key: prev, delete: true},
			watchOn{key: hkey, puts: true, skip: e.namesMe})
		if err != nil {
			return nil, lapsed(fmt.Errorf("etcdlease: member %q: watch %q: %w", e.cfg.ID, prev, err))
		}
	}
}

// changedSince returns a check for waitAny, made after a read at which
// the handover key was hkvs: whether that key changed since, whether key
// prev (if not "") is no longer the one created at revision prevRev, and
// whether (if newer is not 0) a campaign key was created after revision
// newer.
func (e *Elector) changedSince(hkey string, hkvs []*mvccpb.KeyValue, prev string, prevRev, newer int64) func(context.Context) (bool, error) {
	var hmod int64
	if len(hkvs) > 0 {
		hmod = hkvs[0].ModRevision
	}
	return func(ctx context.Context) (bool, error) {
		ops := []clientv3.Op{clientv3.OpGet(hkey)}
		if prev != "" {
			ops = append(ops, clientv3.OpGet(prev))
		}
		if newer != 0 {
			ops = append(ops, clientv3.OpGet(e.cfg.Prefix, clientv3.WithPrefix(), clientv3.WithMinCreateRev(newer+1), clientv3.WithCountOnly()))
		}
		tr, err := e.c.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			return false, err
		}
		h := tr.Responses[0].GetResponseRange().Kvs
		if (len(h) == 0 && hmod != 0) || (len(h) > 0 && h[0].ModRevision != hmod) {
			return true, nil
		}
		if prev != "" {
			p := tr.Responses[1].GetResponseRange().Kvs
			if len(p) == 0 || p[0].CreateRevision != prevRev {
				return true, nil
			}
		}
		if newer != 0 && tr.Responses[len(ops)-1].GetResponseRange().Count > 0 {
			return true, nil
		}
		return false, nil
	}
}

// putKey creates the campaign key attached to lease id and returns its
// create revision. While etcd is unavailable it retries, which is safe
// because the key is unique to the lease: a retry finds the key an
// earlier attempt created.
func (e *Elector) putKey(ctx context.Context, key string, id clientv3.LeaseID) (int64, error) {
	for {
		tr, err := e.c.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, string(e.record), clientv3.WithLease(id))).
			Else(clientv3.OpGet(key)).
			Commit()
		switch {
		case err != nil && transient(err) && e.pause(ctx):
			continue
		case err != nil:
			return 0, fmt.Errorf("etcdlease: member %q: put campaign key %q: %w", e.cfg.ID, key, err)
		case tr.Succeeded:
			return tr.Header.Revision, nil
		}
		kvs := tr.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 1 && clientv3.LeaseID(kvs[0].Lease) == id {
			return kvs[0].CreateRevision, nil
		}
		return 0, fmt.Errorf("etcdlease: member %q: campaign key %q exists and is not attached to lease %016x", e.cfg.ID, key, int64(id))
	}
}

// spawn runs f on a goroutine that Close waits for, unless the Elector is
// closed.
func (e *Elector) spawn(f func()) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return false
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		f()
	}()
	return true
}

// Close resigns the Term this member holds (waiting at most one TTL for
// etcd to confirm), stops every campaign and observer, and waits for the
// Elector's goroutines. It does not close the etcd client. Later calls
// return the first call's result.
func (e *Elector) Close() error {
	e.closeOnce.Do(func() {
		e.mu.Lock()
		e.closed = true
		t := e.term
		e.mu.Unlock()
		if t != nil {
			ctx, cancel := context.WithTimeout(context.Background(), e.cfg.TTL)
			e.closeErr = t.Resign(ctx)
			cancel()
		}
		e.cancel()
		e.wg.Wait()
	})
	return e.closeErr
}
