package etcdlease

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hakit/hakit/lease"
	"github.com/hakit/hakit/lease/clock"
)

// maxInflight bounds the keepalive requests a keeper has outstanding while
// the link is slow or cut.
const maxInflight = 8

// keeper keeps one etcd lease alive and owns the deadline after which this
// member can no longer be sure the lease is held.
//
// Invariant: deadline = send time of the newest answered keepalive (or of
// the grant) + granted TTL - margin, on the keeper's clock. etcd renews a
// lease for the full TTL when a request arrives, which is after it was
// sent, so etcd cannot expire the lease before deadline + margin, give or
// take clock drift. done is closed at the latest when the clock reaches
// deadline, and no keepalive is sent after done is closed.
type keeper struct {
	c        *clientv3.Client
	clk      clock.Clock
	log      *slog.Logger
	member   string
	id       clientv3.LeaseID
	ttl      time.Duration // as granted by etcd
	margin   time.Duration
	interval time.Duration // between keepalives while they are answered
	retry    time.Duration // between keepalives while they are not

	base   context.Context // the Elector's lifetime
	ctx    context.Context // ends with the keeper; bounds every request for this lease
	cancel context.CancelFunc
	done   chan struct{}
	exited chan struct{}

	mu       sync.Mutex
	err      error
	endedAt  time.Time // when err was set and done closed
	deadline time.Time

	releaseMu sync.Mutex
	released  bool
}

type keepaliveResult struct {
	sent time.Time
	ttl  time.Duration
	err  error
}

// newKeeper returns a keeper for lease id, granted for ttl by a request
// sent at sent. Its loop is started by the caller with run.
func newKeeper(base context.Context, cfg Config, id clientv3.LeaseID, ttl time.Duration, sent time.Time) *keeper {
	ctx, cancel := context.WithCancel(base)
	interval := ttl / 3
	return &keeper{
		c:        cfg.Client,
		clk:      cfg.Clock,
		log:      cfg.Logger.With("lease", fmt.Sprintf("%016x", int64(id))),
		member:   cfg.ID,
		id:       id,
		ttl:      ttl,
		margin:   cfg.DriftMargin,
		interval: interval,
		retry:    min(interval/4, 250*time.Millisecond),
		base:     base,
		ctx:      ctx,
		cancel:   cancel,
		done:     make(chan struct{}),
		exited:   make(chan struct{}),
		deadline: sent.Add(ttl - cfg.DriftMargin),
	}
}

// end ends the keeper with err, closing done, unless it has ended already.
// It reports whether this call ended it.
func (k *keeper) end(err error) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.err != nil {
		return false
	}
	k.err, k.endedAt = err, k.clk.Now()
	close(k.done)
	k.cancel()
	return true
}

// Err returns why the keeper ended, or nil while it runs.
func (k *keeper) Err() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.err
}

// EndedAt returns when the keeper ended, or the zero time while it runs.
func (k *keeper) EndedAt() time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.endedAt
}

// Deadline returns the current self-fencing deadline.
func (k *keeper) Deadline() time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.deadline
}

// alive reports whether the keeper has not ended and its deadline is still
// ahead. It closes the window between the deadline passing and the loop
// noticing it.
func (k *keeper) alive() bool {
	k.mu.Lock()
	ended, deadline := k.err != nil, k.deadline
	k.mu.Unlock()
	return !ended && k.clk.Now().Before(deadline)
}

// run drives keepalives and the deadline until the keeper ends, then
// revokes the lease unless release already did. It must run exactly once.
func (k *keeper) run() {
	defer close(k.exited)
	defer func() {
		ctx, cancel := context.WithTimeout(k.base, k.ttl)
		defer cancel()
		if err := k.release(ctx); err != nil {
			k.log.Debug("etcdlease: revoke after the term ended failed; the lease expires by itself", "err", err)
		}
	}()

	now := k.clk.Now()
	deadline := k.Deadline()
	dl := k.clk.NewTimer(deadline.Sub(now))
	defer dl.Stop()
	next := k.clk.NewTimer(k.interval)
	defer next.Stop()
	results := make(chan keepaliveResult, maxInflight)
	inflight := 0
	defer func() {
		// The keeper has ended, so k.ctx is cancelled and every request
		// in flight returns promptly; wait for them so that Close leaves
		// no goroutine behind.
		for ; inflight > 0; inflight-- {
			<-results
		}
	}()
	var newest time.Time // send time of the newest answered keepalive

	for {
		select {
		case <-k.ctx.Done():
			k.end(fmt.Errorf("%w: member %q: elector closed", lease.ErrResigned, k.member))
			return
		case <-dl.C():
			k.end(fmt.Errorf("%w: member %q: lease %016x: self-fencing deadline %s passed with no keepalive answered (TTL %v, drift margin %v)",
				lease.ErrLost, k.member, int64(k.id), deadline.Format(time.RFC3339Nano), k.ttl, k.margin))
			return
		case <-next.C():
			if inflight < maxInflight {
				inflight++
				go k.keepalive(results)
			}
			next.Reset(k.retry)
		case r := <-results:
			inflight--
			switch {
			case r.err == nil && r.ttl > 0:
				if d := r.sent.Add(r.ttl - k.margin); d.After(deadline) {
					// Move the timer before publishing the deadline: a
					// reader of Deadline may then rely on the timer, and
					// alive() seeing the older deadline errs on the safe
					// side.
					dl.Reset(d.Sub(k.clk.Now()))
					deadline = d
					k.mu.Lock()
					k.deadline = d
					k.mu.Unlock()
				}
				if r.sent.After(newest) {
					newest = r.sent
					next.Reset(max(0, r.sent.Add(k.interval).Sub(k.clk.Now())))
				}
			case errors.Is(r.err, rpctypes.ErrLeaseNotFound) || (r.err == nil && r.ttl <= 0):
				k.end(fmt.Errorf("%w: member %q: etcd reports lease %016x expired or revoked", lease.ErrLost, k.member, int64(k.id)))
				return
			case k.ctx.Err() == nil:
				k.log.Debug("etcdlease: keepalive failed", "err", r.err, "deadline", deadline)
			}
		}
	}
}

// keepalive sends one keepalive and reports its send time and result.
// results has room for every request in flight, so it never blocks.
func (k *keeper) keepalive(results chan<- keepaliveResult) {
	sent := k.clk.Now()
	ctx, cancel := context.WithTimeout(k.ctx, k.interval)
	defer cancel()
	resp, err := k.c.KeepAliveOnce(ctx, k.id)
	r := keepaliveResult{sent: sent, err: err}
	if err == nil {
		r.ttl = time.Duration(resp.TTL) * time.Second
	}
	results <- r
}

// release revokes the lease, which deletes the campaign key, unless a
// previous call did. A lease etcd no longer knows counts as released.
func (k *keeper) release(ctx context.Context) error {
	k.releaseMu.Lock()
	defer k.releaseMu.Unlock()
	if k.released {
		return nil
	}
	_, err := k.c.Revoke(ctx, k.id)
	if err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("etcdlease: member %q: revoke lease %016x: %w", k.member, int64(k.id), err)
	}
	k.released = true
	return nil
}
