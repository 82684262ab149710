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
// take clock drift. No keepalive is sent after done is closed.
//
// A timer fires late when the process is starved of CPU, and a late
// deadline timer eats into the margin. So the keeper measures how late its
// own timers fire (lag: the largest lateness over the last TTL) and closes
// done at deadline - lag, expecting the next wakeup to be about as late;
// when a timer fires later than half the margin, the margin can no longer
// be kept and it closes done at once. An answer that arrives once that
// point has passed does not revive the term.
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

	lag lateness // run's only

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

	k.lag.window = k.ttl
	deadline := k.Deadline()
	dl := newTimerAt(k.clk, deadline)
	defer dl.stop()
	next := newTimerAt(k.clk, k.clk.Now().Add(k.interval))
	defer next.stop()
	// pulse wakes the keeper often enough to see how late this process
	// runs before it matters: a stall is noticed within a quarter of the
	// margin of its end, not at the next keepalive.
	pulseEvery := max(k.margin/4, time.Millisecond)
	pulse := newTimerAt(k.clk, k.clk.Now().Add(pulseEvery))
	defer pulse.stop()
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
		case <-dl.c():
			if k.overdue(dl.fired(), deadline) {
				return
			}
			dl.reset(deadline.Add(-k.lag.max(k.clk.Now())))
		case <-pulse.c():
			if k.overdue(pulse.fired(), deadline) {
				return
			}
			pulse.reset(k.clk.Now().Add(pulseEvery))
			dl.reset(deadline.Add(-k.lag.max(k.clk.Now())))
		case <-next.c():
			if k.overdue(next.fired(), deadline) {
				return
			}
			if inflight < maxInflight {
				inflight++
				go k.keepalive(results)
			}
			next.reset(k.clk.Now().Add(k.retry))
			// A larger lag brings the end forward.
			dl.reset(deadline.Add(-k.lag.max(k.clk.Now())))
		case r := <-results:
			inflight--
			if k.overdue(0, deadline) {
				return // too late to be revived by this answer
			}
			switch {
			case r.err == nil && r.ttl > 0:
				if d := r.sent.Add(r.ttl - k.margin); d.After(deadline) {
					// Move the timer before publishing the deadline: a
					// reader of Deadline may then rely on the timer, and
					// alive() seeing the older deadline errs on the safe
					// side.
					deadline = d
					dl.reset(deadline.Add(-k.lag.max(k.clk.Now())))
					k.mu.Lock()
					k.deadline = d
					k.mu.Unlock()
				}
				if r.sent.After(newest) {
					newest = r.sent
					next.reset(r.sent.Add(k.interval))
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

// overdue records how late a timer of the keeper fired (the lateness of
// a wakeup at now, due at due; zero for a wakeup that was not a timer's)
// and ends the keeper if the term can no longer be trusted: the clock has
// reached deadline less the recent lag, or this process's timers are so
// late that the margin cannot be kept. It reports whether it ended it.
func (k *keeper) overdue(late time.Duration, deadline time.Time) bool {
	now := k.clk.Now()
	if late > 0 {
		k.lag.add(now, late)
	}
	lag := k.lag.max(now)
	switch {
	case late > k.margin/2:
		k.end(fmt.Errorf("%w: member %q: lease %016x: stepped down %v before the self-fencing deadline %s: a timer of this process fired %v late, more than half the drift margin %v, so it cannot be trusted to keep it (CPU starvation?)",
			lease.ErrLost, k.member, int64(k.id), deadline.Sub(now).Round(time.Millisecond), deadline.Format(time.RFC3339Nano), late.Round(time.Millisecond), k.margin))
		return true
	case !now.Before(deadline.Add(-lag)):
		k.end(fmt.Errorf("%w: member %q: lease %016x: self-fencing deadline %s passed with no keepalive answered (TTL %v, drift margin %v, timers running up to %v late)",
			lease.ErrLost, k.member, int64(k.id), deadline.Format(time.RFC3339Nano), k.ttl, k.margin, lag.Round(time.Millisecond)))
		return true
	}
	return false
}

// lateness keeps the largest lateness of the keeper's timer wakeups over
// the last window, as the largest of each of a few slices of it, so that
// any rate of wakeups takes bounded memory.
type lateness struct {
	window time.Duration
	slices [8]struct {
		start time.Time // the slice's first sample; zero: empty
		late  time.Duration
	}
	cur int // the slice being filled
}

func (l *lateness) add(at time.Time, late time.Duration) {
	s := &l.slices[l.cur]
	if !s.start.IsZero() && at.Sub(s.start) >= l.window/time.Duration(len(l.slices)) {
		l.cur = (l.cur + 1) % len(l.slices)
		s = &l.slices[l.cur]
		s.start, s.late = time.Time{}, 0
	}
	if s.start.IsZero() {
		s.start = at
	}
	s.late = max(s.late, late)
}

// max returns the largest lateness of a slice that began within window
// before now (so a sample counts for between a window and a slice more).
func (l *lateness) max(now time.Time) time.Duration {
	var m time.Duration
	for _, s := range l.slices {
		if !s.start.IsZero() && now.Sub(s.start) <= l.window {
			m = max(m, s.late)
		}
	}
	return m
}

// timerAt is a clock.Timer set for an instant, which knows how late it
// fired.
type timerAt struct {
	clk clock.Clock
	t   clock.Timer
	at  time.Time
}

func newTimerAt(clk clock.Clock, at time.Time) *timerAt {
	return &timerAt{clk: clk, t: clk.NewTimer(at.Sub(clk.Now())), at: at}
}

func (t *timerAt) c() <-chan time.Time { return t.t.C() }

// reset sets the timer for at.
func (t *timerAt) reset(at time.Time) {
	t.at = at
	t.t.Reset(at.Sub(t.clk.Now()))
}

// fired returns how late the timer fired, if it has just fired.
func (t *timerAt) fired() time.Duration { return max(0, t.clk.Now().Sub(t.at)) }

func (t *timerAt) stop() { t.t.Stop() }

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
