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

// Leader returns the member whose key is the oldest under the election
// prefix, with the key's create revision as its token, or an error
// wrapping lease.ErrNoLeader if there is none. The answer is a
// linearizable read of etcd; a holder that is cut off has stopped leading
// (its Done is closed) up to DriftMargin before its key disappears, so
// Leader can name a member whose term has just ended. A key whose value
// is not a member record gives an error wrapping ErrBadRecord.
func (e *Elector) Leader(ctx context.Context) (lease.Leader, error) {
	if e.ctx.Err() != nil {
		return lease.Leader{}, lease.ErrClosed
	}
	resp, err := e.c.Get(ctx, e.cfg.Prefix, append(clientv3.WithFirstCreate(), clientv3.WithPrefix())...)
	if err != nil {
		return lease.Leader{}, fmt.Errorf("etcdlease: read election %q: %w", e.cfg.Prefix, err)
	}
	if len(resp.Kvs) == 0 {
		return lease.Leader{}, fmt.Errorf("%w: election %q", lease.ErrNoLeader, e.cfg.Prefix)
	}
	kv := resp.Kvs[0]
	rec, err := decodeRecord(string(kv.Key), kv.Value)
	if err != nil {
		return lease.Leader{}, err
	}
	return lease.Leader{ID: rec.ID, Token: fence.Token(kv.CreateRevision), Addr: rec.Addr}, nil
}

// Observe returns a channel that receives the current leader and then
// every change of leader, in revision order, with the zero Leader when no
// key is left. It reads the election before it returns (waiting at most
// TTL/3), so the first value is the leader as of the call; if that read
// fails, the first value comes once etcd answers. Changes are queued for a slow reader, never dropped. If the
// watch has to be re-established after its revision was compacted,
// changes inside the compacted span cannot be seen; the channel then
// jumps to the current leader. A key whose value is not a member record
// is reported with its token and an empty ID, and logged. The channel is
// closed when ctx ends or the Elector is closed.
func (e *Elector) Observe(ctx context.Context) <-chan lease.Leader {
	out := make(chan lease.Leader)
	octx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(e.ctx, cancel)
	o := &observer{e: e, out: out, keys: map[string]lease.Leader{}}
	// Read the election before returning, so that the first value is the
	// leader as of this call, not of whenever the goroutine gets to run.
	// Bound the read: with etcd unreachable, Observe still returns, and
	// the goroutine keeps trying.
	rctx, rcancel := context.WithTimeout(octx, e.cfg.TTL/3)
	rev, loaded := o.read(rctx)
	rcancel()
	ok := e.spawn(func() {
		defer close(out)
		defer cancel()
		defer stop()
		if loaded {
			o.follow(octx, rev+1)
		}
		o.run(octx)
	})
	if !ok {
		stop()
		cancel()
		close(out)
	}
	return out
}

// observer follows the keys of an election and queues every change of
// their oldest.
type observer struct {
	e     *Elector
	out   chan<- lease.Leader
	keys  map[string]lease.Leader // campaign key -> its member, Token = create revision
	last  lease.Leader
	sent  bool // whether last was queued at least once
	queue []lease.Leader
}

func (o *observer) run(ctx context.Context) {
	for ctx.Err() == nil {
		rev, ok := o.load(ctx)
		if !ok {
			continue
		}
		o.follow(ctx, rev+1)
	}
}

// load reads every key of the election, queues the leader if it changed,
// and returns the revision of the read. It delivers queued values while it
// waits between failed reads.
func (o *observer) load(ctx context.Context) (int64, bool) {
	rev, ok := o.read(ctx)
	if !ok {
		pause := o.e.cfg.Clock.NewTimer(o.e.cfg.TTL / 10)
		defer pause.Stop()
		o.deliver(ctx, pause.C())
	}
	return rev, ok
}

// read is one attempt of load, without the pause after a failure.
func (o *observer) read(ctx context.Context) (int64, bool) {
	resp, err := o.e.c.Get(ctx, o.e.cfg.Prefix, clientv3.WithPrefix())
	if err != nil {
		o.e.log.Debug("etcdlease: observe: read failed", "err", err)
		return 0, false
	}
	clear(o.keys)
	for _, kv := range resp.Kvs {
		o.keys[string(kv.Key)] = o.member(kv)
	}
	o.update()
	return resp.Header.Revision, true
}

// follow applies watch events from revision from on, queueing every
// change of leader, until the watch breaks or ctx ends.
func (o *observer) follow(ctx context.Context, from int64) {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := o.e.c.Watch(wctx, o.e.cfg.Prefix, clientv3.WithPrefix(), clientv3.WithRev(from))
	for {
		var send chan<- lease.Leader
		var head lease.Leader
		if len(o.queue) > 0 {
			send, head = o.out, o.queue[0]
		}
		select {
		case <-ctx.Done():
			return
		case send <- head:
			o.queue = o.queue[1:]
		case wr, ok := <-wch:
			if !ok || wr.Err() != nil {
				if ok {
					o.e.log.Debug("etcdlease: observe: watch broke", "err", wr.Err())
				}
				return
			}
			for _, ev := range wr.Events {
				key := string(ev.Kv.Key)
				if ev.Type == mvccpb.DELETE {
					delete(o.keys, key)
				} else {
					o.keys[key] = o.member(ev.Kv)
				}
				o.update()
			}
		}
	}
}

// deliver hands queued values to the reader until wake fires or ctx ends.
func (o *observer) deliver(ctx context.Context, wake <-chan time.Time) {
	for {
		var send chan<- lease.Leader
		var head lease.Leader
		if len(o.queue) > 0 {
			send, head = o.out, o.queue[0]
		}
		select {
		case <-ctx.Done():
			return
		case <-wake:
			return
		case send <- head:
			o.queue = o.queue[1:]
		}
	}
}

// member decodes a campaign key's value, keeping the key's token when the
// value is bad.
func (o *observer) member(kv *mvccpb.KeyValue) lease.Leader {
	l := lease.Leader{Token: fence.Token(kv.CreateRevision)}
	rec, err := decodeRecord(string(kv.Key), kv.Value)
	if err != nil {
		o.e.log.Error("etcdlease: observe", "err", err)
		return l
	}
	l.ID, l.Addr = rec.ID, rec.Addr
	return l
}

// update queues the oldest key's member if it differs from the last one
// queued. The first update always queues, so a new observer gets the
// current leader at once.
func (o *observer) update() {
	var cur lease.Leader
	for _, l := range o.keys {
		if cur.IsZero() || l.Token < cur.Token {
			cur = l
		}
	}
	if o.sent && cur == o.last {
		return
	}
	o.last, o.sent = cur, true
	o.queue = append(o.queue, cur)
}
