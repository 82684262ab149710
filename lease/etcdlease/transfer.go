package etcdlease

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hakit/hakit/lease"
)

var (
	// ErrNotHolding is returned by Transfer on a member that holds no
	// term, or whose term ended or lost its leader key meanwhile.
	ErrNotHolding = errors.New("etcdlease: not holding the lease")
	// ErrNotWaiting is returned by Transfer when the named member has no
	// campaign waiting, or stopped waiting before it took over.
	ErrNotWaiting = errors.New("etcdlease: member not waiting for the lease")
	// ErrHandoverLapsed is returned by Transfer when the handover did not
	// complete in time: the campaigns ahead of the named member did not
	// give way within half the TTL (they are cut off from etcd), or the
	// handover record expired before the named member took over.
	ErrHandoverLapsed = errors.New("etcdlease: handover lapsed")
)

var _ lease.Transferer = (*Elector)(nil)

// errStalled and errTermEnded are the causes with which Transfer's wait
// for the others to give way ends early.
var (
	errStalled   = errors.New("stalled")
	errTermEnded = errors.New("term ended")
)

// Transfer hands the lease this member holds to member to, which must
// have a campaign waiting; see the package doc, "Transfer", for the
// protocol. It returns nil once to has won, that is once its Campaign has
// seen itself first in line and cleared the handover record. This
// member's term ends (Done closes, Err wraps lease.ErrResigned) before
// to's Campaign can return, and to's token is larger.
//
// Errors, and the state they leave:
//   - Before this member resigns — ErrNotHolding, ErrNotWaiting (to has
//     no campaign key, or its campaign ended meanwhile), ErrHandoverLapsed
//     (campaigns ahead of to did not give way within TTL/2), ctx's error
//     — this member still holds its term (if it held one), and the
//     handover record is removed; calling Resign then lets the oldest
//     waiter take over as usual. After Close the error wraps
//     lease.ErrClosed, and Close has resigned the term.
//   - After it resigned — an error from the revoke (etcd unreachable; the
//     lease expires within the TTL), ErrNotWaiting (to stopped waiting
//     before it won; the next in line takes over), ErrHandoverLapsed (the
//     handover record expired before to won), or ctx's error — the term
//     has ended. Transfer removes the handover record before returning
//     (or, if etcd is unreachable, it expires within the TTL), so the
//     others stop holding off; to, if still first in line, wins anyway.
//
// Every error names both members.
func (e *Elector) Transfer(ctx context.Context, to string) error {
	fail := func(err error) error {
		return fmt.Errorf("etcdlease: transfer from %q to %q: %w", e.cfg.ID, to, err)
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	select {
	case e.xfer <- struct{}{}:
	case <-ctx.Done():
		return fail(ctx.Err())
	case <-e.ctx.Done():
		return fail(lease.ErrClosed)
	}
	defer func() { <-e.xfer }()
	if e.ctx.Err() != nil {
		return fail(lease.ErrClosed)
	}
	t := e.current()
	if t == nil {
		return fail(ErrNotHolding)
	}
	tctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(e.ctx, cancel)()
	closedOr := func(err error) error {
		if e.ctx.Err() != nil && ctx.Err() == nil {
			return lease.ErrClosed
		}
		return err
	}

	// Follow the election from before the first read, so that every step
	// below sees the others' writes as they happen.
	f, err := newFollower(tctx, e.c, e.cfg.Prefix)
	if err != nil {
		return fail(closedOr(err))
	}
	defer f.close()

	// Find to's campaign key.
	resp, err := e.c.Get(tctx, e.cfg.Prefix, clientv3.WithPrefix())
	if err != nil {
		return fail(closedOr(fmt.Errorf("read election %q: %w", e.cfg.Prefix, err)))
	}
	q := e.queue(resp.Kvs, t, to)
	switch {
	case !q.holding:
		return fail(fmt.Errorf("%w: leader key %q with token %d is gone", ErrNotHolding, t.key, t.rev))
	case q.toKey == "":
		return fail(fmt.Errorf("%w: no campaign key of %q under %q", ErrNotWaiting, to, e.cfg.Prefix))
	}

	// Write the handover record on a lease of its own, while both keys
	// are still there.
	g, err := e.c.Grant(tctx, int64(e.cfg.TTL/time.Second))
	if err != nil {
		return fail(closedOr(fmt.Errorf("grant the handover lease: %w", err)))
	}
	ttl := time.Duration(g.TTL) * time.Second
	defer func() {
		// The handover ends with Transfer: the others stop holding off.
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), t.k.interval)
		defer rcancel()
		if _, err := e.c.Revoke(rctx, g.ID); err != nil {
			e.log.Debug("etcdlease: could not revoke the handover lease; it expires by itself", "err", err, "ttl", ttl)
		}
	}()
	hkey := handoverKey(e.cfg.Prefix)
	rec := encodeHandover(handover{From: e.cfg.ID, To: to, Token: t.rev})
	tr, err := e.c.Txn(tctx).
		If(clientv3.Compare(clientv3.CreateRevision(t.key), "=", t.rev),
			clientv3.Compare(clientv3.CreateRevision(q.toKey), "=", q.toRev)).
		Then(clientv3.OpPut(hkey, string(rec), clientv3.WithLease(g.ID))).
		Else(clientv3.OpGet(t.key)).
		Commit()
	switch {
	case err != nil:
		return fail(closedOr(fmt.Errorf("write handover record %q: %w", hkey, err)))
	case !tr.Succeeded && len(tr.Responses[0].GetResponseRange().Kvs) == 0:
		return fail(fmt.Errorf("%w: leader key %q with token %d is gone", ErrNotHolding, t.key, t.rev))
	case !tr.Succeeded:
		return fail(fmt.Errorf("%w: campaign key %q of %q is gone", ErrNotWaiting, q.toKey, to))
	}
	hrev := tr.Header.Revision
	e.log.Info("etcdlease: handing the lease over", "to", to, "token", t.rev, "to_key", q.toKey)

	if err := e.awaitGiveWay(tctx, f, t, q, to); err != nil {
		return fail(closedOr(err))
	}
	if err := t.Resign(tctx); err != nil {
		return fail(err)
	}
	if err := e.awaitSuccessor(tctx, f, hkey, hrev, q, g.ID, to); err != nil {
		return fail(closedOr(fmt.Errorf("%w (this member has resigned the term with token %d)", err, t.rev)))
	}
	return nil
}

// queueView is what Transfer needs to know about the line of campaigns.
type queueView struct {
	holding bool   // the holder's key is there with the term's revision
	toKey   string // the oldest campaign key of the named member, or ""
	toRev   int64
	ahead   []string // members with keys older than toKey, the holder's aside
}

// queue reads kvs, the keys under the election prefix, from the point of
// view of term t handing over to member to. Keys that do not decode count
// as ahead (they keep to from leading) but name no member.
func (e *Elector) queue(kvs []*mvccpb.KeyValue, t *Term, to string) queueView {
	var v queueView
	slices.SortFunc(kvs, func(a, b *mvccpb.KeyValue) int { return cmp.Compare(a.CreateRevision, b.CreateRevision) })
	var others []*mvccpb.KeyValue
	for _, kv := range kvs {
		if string(kv.Key) == t.key {
			v.holding = kv.CreateRevision == t.rev
			continue
		}
		others = append(others, kv)
		if v.toKey != "" {
			continue
		}
		if rec, err := decodeRecord(string(kv.Key), kv.Value); err == nil && rec.ID == to {
			v.toKey, v.toRev = string(kv.Key), kv.CreateRevision
		}
	}
	for _, kv := range others {
		if v.toKey == "" || kv.CreateRevision >= v.toRev {
			break
		}
		rec, _ := decodeRecord(string(kv.Key), kv.Value)
		v.ahead = append(v.ahead, fmt.Sprintf("%s (%s)", rec.ID, kv.Key))
	}
	return v
}

// awaitGiveWay waits until the campaign key q.toKey is the oldest but the
// holder's, that is until every campaign ahead of it has given way. It
// gives up after half the TTL, so that the handover record (which lives
// one TTL) is still there when the holder resigns.
func (e *Elector) awaitGiveWay(ctx context.Context, f *follower, t *Term, q queueView, to string) error {
	wctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	timer := time.AfterFunc(e.cfg.TTL/2, func() { cancel(errStalled) })
	defer timer.Stop()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-t.Done():
			cancel(errTermEnded)
		case <-stop:
		}
	}()
	for {
		resp, err := e.c.Get(wctx, e.cfg.Prefix, clientv3.WithPrefix())
		if err == nil {
			now := e.queue(resp.Kvs, t, to)
			switch {
			case !now.holding:
				return fmt.Errorf("%w: leader key %q with token %d is gone", ErrNotHolding, t.key, t.rev)
			case now.toKey != q.toKey || now.toRev != q.toRev:
				return fmt.Errorf("%w: campaign key %q of %q is gone", ErrNotWaiting, q.toKey, to)
			case len(now.ahead) == 0:
				return nil
			}
			q.ahead = now.ahead
			err = f.next(wctx)
		}
		if err != nil && wctx.Err() == nil && transient(err) && e.pause(wctx) {
			continue
		}
		if err != nil || wctx.Err() != nil {
			switch cause := context.Cause(wctx); {
			case errors.Is(cause, errStalled):
				return fmt.Errorf("%w: campaigns ahead of %q did not give way within %v: %v; this member still holds the term with token %d",
					ErrHandoverLapsed, to, e.cfg.TTL/2, q.ahead, t.rev)
			case errors.Is(cause, errTermEnded):
				return fmt.Errorf("%w: the term with token %d ended: %w", ErrNotHolding, t.rev, t.Err())
			case ctx.Err() != nil:
				return fmt.Errorf("%w; this member still holds the term with token %d", ctx.Err(), t.rev)
			}
			return fmt.Errorf("read election %q: %w", e.cfg.Prefix, err)
		}
	}
}

// awaitSuccessor waits, after the holder resigned, until member to has
// won: its Campaign deletes the handover record written at revision hrev
// on lease hl.
func (e *Elector) awaitSuccessor(ctx context.Context, f *follower, hkey string, hrev int64, q queueView, hl clientv3.LeaseID, to string) error {
	for {
		tr, err := e.c.Txn(ctx).Then(clientv3.OpGet(hkey), clientv3.OpGet(q.toKey)).Commit()
		if err == nil {
			hk := tr.Responses[0].GetResponseRange().Kvs
			tk := tr.Responses[1].GetResponseRange().Kvs
			mine := len(hk) == 1 && hk[0].ModRevision == hrev
			switch {
			case len(tk) == 0 || tk[0].CreateRevision != q.toRev:
				return fmt.Errorf("%w: campaign key %q of %q is gone before it took over; the next in line takes over", ErrNotWaiting, q.toKey, to)
			case !mine:
				// Deleted by to's winning Campaign, unless the lease
				// expired (or someone else removed the record).
				ttl, err := e.c.TimeToLive(ctx, hl)
				if err == nil && ttl.TTL > 0 {
					return nil
				}
				if err == nil {
					return fmt.Errorf("%w: handover record %q expired before %q took over", ErrHandoverLapsed, hkey, to)
				}
			default:
				err = f.next(ctx)
			}
		}
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return ctx.Err()
		case transient(err):
			e.pause(ctx)
		default:
			return fmt.Errorf("wait for %q to take over: %w", to, err)
		}
	}
}

// clearHandover deletes the handover record kv, which names this member,
// after it won: that tells the former holder's Transfer that it is done
// and stops the others holding off. A failure only delays both until the
// record expires, so it is logged, not returned.
func (e *Elector) clearHandover(ctx context.Context, kv *mvccpb.KeyValue) {
	cctx, cancel := context.WithTimeout(ctx, e.cfg.TTL/3)
	defer cancel()
	_, err := e.c.Txn(cctx).
		If(clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision)).
		Then(clientv3.OpDelete(string(kv.Key))).
		Commit()
	if err != nil {
		e.log.Warn("etcdlease: could not clear the handover record; it expires by itself", "key", string(kv.Key), "err", err)
	}
}
