package etcdlease

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"unicode/utf8"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrBadHandover is wrapped by the error for a value at the handover key
// that is not a handover record this package wrote. Campaigns ignore such
// a value (and log it) rather than hold off for it.
var ErrBadHandover = errors.New("etcdlease: bad handover record")

// maxHandoverLen bounds a handover record: two member IDs plus framing.
const maxHandoverLen = 2*MaxIDLen + 256

// handover is the value of the handover key: the holder of the term with
// Token, From, hands the lease to To.
type handover struct {
	V     int    `json:"v"`
	From  string `json:"from"`
	To    string `json:"to"`
	Token int64  `json:"token"`
}

// handoverKey returns the key of an election's handover record. It lies
// next to the election prefix, not under it, so that Leader, Observe and
// the queue of campaign keys never see it: for "svc/election/" it is
// "svc/election.handover".
func handoverKey(prefix string) string {
	return strings.TrimSuffix(prefix, "/") + ".handover"
}

func encodeHandover(h handover) []byte {
	h.V = recordVersion
	b, err := json.Marshal(h)
	if err != nil {
		// A struct of two ints and two strings always marshals.
		panic(fmt.Sprintf("etcdlease: encode handover record: %v", err))
	}
	return b
}

// decodeHandover decodes the value stored at the handover key. It accepts
// exactly one JSON object of the current version naming both members and a
// positive token; anything else is an error wrapping ErrBadHandover that
// names key.
func decodeHandover(key string, b []byte) (handover, error) {
	bad := func(format string, args ...any) (handover, error) {
		return handover{}, fmt.Errorf("%w: key %q: "+format, append([]any{ErrBadHandover, key}, args...)...)
	}
	if len(b) > maxHandoverLen {
		return bad("value has %d bytes, more than %d", len(b), maxHandoverLen)
	}
	if !utf8.Valid(b) {
		return bad("value is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var h handover
	if err := dec.Decode(&h); err != nil {
		return bad("value is not a handover record: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return bad("value has data after the handover record")
	}
	switch {
	case h.V != recordVersion:
		return bad("record version %d, want %d", h.V, recordVersion)
	case h.From == "" || h.To == "":
		return bad("from %q or to %q is empty", h.From, h.To)
	case len(h.From) > MaxIDLen || len(h.To) > MaxIDLen:
		return bad("a member ID is longer than %d bytes", MaxIDLen)
	case h.Token <= 0:
		return bad("token %d is not positive", h.Token)
	}
	return h, nil
}

// liveHandover returns the handover record in kvs (the result of a read
// of the handover key), or false if there is none the campaign should
// honour. A record that does not decode, or that is not attached to a
// lease (it would never expire, so honouring it could stop the election
// for good), is logged and ignored.
func (e *Elector) liveHandover(kvs []*mvccpb.KeyValue) (handover, bool) {
	if len(kvs) == 0 {
		return handover{}, false
	}
	kv := kvs[0]
	h, err := decodeHandover(string(kv.Key), kv.Value)
	if err != nil {
		e.log.Error("etcdlease: ignoring the handover key", "err", err)
		return handover{}, false
	}
	if kv.Lease == 0 {
		e.log.Error("etcdlease: ignoring a handover record with no lease", "key", string(kv.Key), "to", h.To)
		return handover{}, false
	}
	return h, true
}

// namesMe reports whether ev writes a handover record naming this member:
// a campaign waiting behind others has nothing to do about that until the
// key before its own goes.
func (e *Elector) namesMe(ev *clientv3.Event) bool {
	h, err := decodeHandover(string(ev.Kv.Key), ev.Kv.Value)
	return err == nil && ev.Type == mvccpb.PUT && h.To == e.cfg.ID
}

// waitingAfter reports whether member id has a campaign key created after
// revision rev.
func (e *Elector) waitingAfter(ctx context.Context, id string, rev int64) (bool, error) {
	resp, err := e.c.Get(ctx, e.cfg.Prefix, clientv3.WithPrefix(), clientv3.WithMinCreateRev(rev+1))
	if err != nil {
		return false, fmt.Errorf("etcdlease: member %q: read election %q: %w", e.cfg.ID, e.cfg.Prefix, err)
	}
	for _, kv := range resp.Kvs {
		if rec, err := decodeRecord(string(kv.Key), kv.Value); err == nil && rec.ID == id {
			return true, nil
		}
	}
	return false, nil
}

// yield moves this campaign to the back of the line: in one transaction it
// deletes key (created at rev) and creates a new key on the same lease,
// which gets a new, larger create revision. It returns the new key and its
// create revision, or an error wrapping errLapsed if key was gone.
func (e *Elector) yield(ctx context.Context, key string, rev int64, id clientv3.LeaseID, n int) (string, int64, error) {
	next := fmt.Sprintf("%s%016x.%d", e.cfg.Prefix, int64(id), n)
	tr, err := e.c.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", rev),
			clientv3.Compare(clientv3.CreateRevision(next), "=", 0)).
		Then(clientv3.OpDelete(key), clientv3.OpPut(next, string(e.record), clientv3.WithLease(id))).
		Commit()
	switch {
	case err != nil:
		return "", 0, fmt.Errorf("etcdlease: member %q: give way with campaign key %q: %w", e.cfg.ID, key, err)
	case !tr.Succeeded:
		return "", 0, fmt.Errorf("%w: member %q: campaign key %q was deleted", errLapsed, e.cfg.ID, key)
	}
	return next, tr.Header.Revision, nil
}

// watchOn names events that waitAny waits for: on key, or on every key
// under it if prefix is set, puts and/or deletions, except those for which
// skip (if set) reports true.
type watchOn struct {
	key          string
	prefix       bool
	puts, delete bool
	skip         func(*clientv3.Event) bool
}

// waitAny returns once an event matching one of ws happens, or once a
// watch was interrupted in a way after which the caller must look again
// (loss of the etcd leader). It returns ctx's error if ctx ends first.
//
// The watches start at the current revision, not at the revision of the
// caller's last read: etcd serves a watch that starts in the past from a
// catch-up loop that runs every 100 ms, which would delay each step of a
// handover by up to that much. Once etcd has confirmed the watches,
// changed reports whether anything the caller waits for happened since its
// read; if so (or if changed fails), waitAny returns at once.
func waitAny(ctx context.Context, c *clientv3.Client, changed func(context.Context) (bool, error), ws ...watchOn) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	results := make(chan error, len(ws))
	created := make(chan struct{}, len(ws))
	var wg sync.WaitGroup
	for _, w := range ws {
		opts := []clientv3.OpOption{clientv3.WithCreatedNotify()}
		if w.prefix {
			opts = append(opts, clientv3.WithPrefix())
		}
		if !w.puts {
			opts = append(opts, clientv3.WithFilterPut())
		}
		if !w.delete {
			opts = append(opts, clientv3.WithFilterDelete())
		}
		wch := c.Watch(wctx, w.key, opts...)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var last clientv3.WatchResponse
			for wr := range wch {
				if wr.Created {
					created <- struct{}{}
				}
				for _, ev := range wr.Events {
					if w.skip == nil || !w.skip(ev) {
						results <- nil
						return
					}
				}
				last = wr
			}
			results <- last.Err()
		}()
	}
	err := func() error {
		for range ws {
			select {
			case <-created:
			case err := <-results:
				return err
			case <-wctx.Done():
				return nil
			}
		}
		if changed != nil {
			if yes, err := changed(wctx); err != nil || yes {
				return err
			}
		}
		select {
		case err := <-results:
			return err
		case <-wctx.Done():
			return nil
		}
	}()
	cancel()
	wg.Wait()
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	if err != nil && !errors.Is(err, rpctypes.ErrCompacted) && !transient(err) && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// HandoverKey returns the etcd key at which Transfer writes its handover
// record for this Elector's election (see the package doc, "Transfer").
// It is outside the election prefix.
func (e *Elector) HandoverKey() string { return handoverKey(e.cfg.Prefix) }

// follower watches an election's keys and its handover key together. Its
// watch starts at the current revision and is in place before newFollower
// returns, so a read made afterwards plus the events that follow miss no
// change. (A watch that starts at a past revision is served by etcd's
// catch-up loop, which runs every 100 ms; following a handover's quick
// succession of writes that way would add up to that much per step.)
type follower struct {
	c          *clientv3.Client
	base       context.Context // the watch's lifetime
	start, end string
	cancel     context.CancelFunc
	wch        clientv3.WatchChan
}

// newFollower starts following the election under prefix and its handover
// key: the range from the handover key (which sorts just before the
// prefix) to the end of the prefix. A change outside the election in that
// range only causes an extra read.
func newFollower(ctx context.Context, c *clientv3.Client, prefix string) (*follower, error) {
	f := &follower{c: c, base: ctx, start: handoverKey(prefix), end: clientv3.GetPrefixRangeEnd(prefix)}
	if err := f.watch(ctx); err != nil {
		return nil, err
	}
	return f, nil
}

// watch (re)starts the watch and waits until etcd confirms it or ctx
// ends.
func (f *follower) watch(ctx context.Context) error {
	if f.cancel != nil {
		f.cancel()
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(f.base))
	f.cancel = cancel
	f.wch = f.c.Watch(wctx, f.start, clientv3.WithRange(f.end), clientv3.WithCreatedNotify())
	select {
	case wr, ok := <-f.wch:
		if !ok || wr.Err() != nil {
			if err := ctx.Err(); err != nil {
				return err
			}
			return fmt.Errorf("watch %q to %q: %v", f.start, f.end, wr.Err())
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// next waits for the next change in the range. If the watch broke, it
// starts a new one and returns, so that the caller reads again.
func (f *follower) next(ctx context.Context) error {
	for {
		select {
		case wr, ok := <-f.wch:
			if ok && wr.Err() == nil && len(wr.Events) == 0 {
				continue // a progress notification
			}
			if ok && wr.Err() == nil {
				return nil
			}
			return f.watch(ctx)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (f *follower) close() { f.cancel() }
