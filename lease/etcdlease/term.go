package etcdlease

import (
	"context"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/lease"
)

// Term is a member's tenure as leader of an etcd election, as returned by
// Elector.Campaign. It implements lease.Term and is safe for concurrent
// use.
//
// Besides the token, a Term names its leader key and that key's create
// revision, so that a store in the same etcd can make a write conditional
// on the key still being the one this term created (etcdstore's Bind): such
// a write fails as soon as the lease is gone, independently of Done.
type Term struct {
	e    *Elector
	k    *keeper
	key  string
	rev  int64
	self lease.Leader
}

var _ lease.Term = (*Term)(nil)

// newTerm starts the Term of a campaign that won with key, created at
// revision rev, as of the read at revision seen.
func (e *Elector) newTerm(k *keeper, key string, rev, seen int64) *Term {
	t := &Term{
		e:    e,
		k:    k,
		key:  key,
		rev:  rev,
		self: lease.Leader{ID: e.cfg.ID, Token: fence.Token(rev), Addr: e.cfg.Addr},
	}
	if !e.spawn(func() { t.watchKey(seen + 1) }) {
		k.end(lease.ErrClosed)
	}
	return t
}

// Token returns the create revision of the leader key, which is larger than
// that of every earlier term of the election.
func (t *Term) Token() fence.Token { return fence.Token(t.rev) }

// LeaderKey returns the etcd key this term holds the election with. It is
// attached to the term's lease and deleted when the lease ends.
func (t *Term) LeaderKey() string { return t.key }

// CreateRevision returns the create revision of LeaderKey, the same number
// as Token. A transaction comparing CreateRevision(LeaderKey()) with it
// succeeds only while this term's key exists.
func (t *Term) CreateRevision() int64 { return t.rev }

// Leader returns this term as a lease.Leader.
func (t *Term) Leader() lease.Leader { return t.self }

// Done is closed at the term's self-fencing deadline (see the package
// doc), or earlier when etcd reports the lease gone, the leader key is
// deleted, or the term is resigned.
func (t *Term) Done() <-chan struct{} { return t.k.done }

// Err returns nil while the term is held and afterwards why it ended,
// wrapping lease.ErrLost or lease.ErrResigned.
func (t *Term) Err() error { return t.k.Err() }

// Deadline returns the self-fencing deadline, on the Elector's clock:
// the send time of the newest answered keepalive + TTL - DriftMargin. It
// moves only later. Done closes at the latest then, and earlier by the
// lateness of this process's timers (see the package doc).
func (t *Term) Deadline() time.Time { return t.k.Deadline() }

// EndedAt returns the time, on the Elector's clock, at which Done was
// closed, or the zero time while the term is held.
func (t *Term) EndedAt() time.Time { return t.k.EndedAt() }

// Resign closes Done, then revokes the lease, which deletes the leader key
// so that the next campaigner wins within about one round trip. If the
// revoke fails (ctx ended, etcd unreachable) the error says so; Done is
// closed regardless and the lease expires within the TTL. Resigning an
// ended term is a no-op that returns nil.
func (t *Term) Resign(ctx context.Context) error {
	if !t.k.end(fmt.Errorf("%w: member %q resigned the term with token %d", lease.ErrResigned, t.self.ID, t.rev)) {
		return nil
	}
	t.e.log.Info("etcdlease: resigned", "token", t.rev)
	if err := t.k.release(ctx); err != nil {
		return fmt.Errorf("etcdlease: member %q: resign token %d: %w", t.self.ID, t.rev, err)
	}
	return nil
}

// watchKey ends the term when the leader key is deleted or replaced. It
// returns when the term ends.
func (t *Term) watchKey(from int64) {
	ctx := clientv3.WithRequireLeader(t.k.ctx)
	for ctx.Err() == nil {
		var last clientv3.WatchResponse
		for wr := range t.e.c.Watch(ctx, t.key, clientv3.WithRev(from)) {
			for _, ev := range wr.Events {
				switch {
				case ev.Type == mvccpb.DELETE || ev.Kv.CreateRevision != t.rev:
					t.k.end(fmt.Errorf("%w: member %q: leader key %q was deleted at revision %d",
						lease.ErrLost, t.self.ID, t.key, ev.Kv.ModRevision))
					return
				case clientv3.LeaseID(ev.Kv.Lease) != t.k.id:
					// Someone rewrote the key without our lease: it would
					// outlive this member, so the election is no longer
					// one this term can hold safely.
					t.k.end(fmt.Errorf("%w: member %q: leader key %q was detached from lease %016x at revision %d",
						lease.ErrLost, t.self.ID, t.key, int64(t.k.id), ev.Kv.ModRevision))
					return
				}
				from = ev.Kv.ModRevision + 1
			}
			last = wr
		}
		if ctx.Err() != nil {
			return
		}
		// The watch broke. Read the key directly before watching again:
		// after a compaction the deletion may be out of the watch's reach.
		t.e.log.Debug("etcdlease: leader key watch interrupted", "err", last.Err())
		if !t.recheck(ctx, &from) {
			return
		}
	}
}

// recheck reads the leader key after a broken watch, ends the term if the
// key is gone, and otherwise sets *from to the revision to watch from. It
// waits a little between failed reads and reports whether to keep
// watching.
func (t *Term) recheck(ctx context.Context, from *int64) bool {
	pause := t.k.clk.NewTimer(t.k.retry)
	defer pause.Stop()
	select {
	case <-pause.C():
	case <-ctx.Done():
		return false
	}
	rctx, cancel := context.WithTimeout(ctx, t.k.interval)
	defer cancel()
	resp, err := t.e.c.Get(rctx, t.key)
	switch {
	case err != nil:
		// Keep trying; if etcd stays unreachable the deadline ends the term.
		return ctx.Err() == nil
	case len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision != t.rev:
		t.k.end(fmt.Errorf("%w: member %q: leader key %q is gone (read at revision %d)",
			lease.ErrLost, t.self.ID, t.key, resp.Header.Revision))
		return false
	}
	*from = resp.Header.Revision + 1
	return true
}
