package hatest

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/ha"
	"github.com/hakit/hakit/lease"
	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/storage"
)

// Recorder builds a History from a real run: wrap each member's Store,
// Sink and WorkFunc with it, pass its OnEvent to each ha.Node, and check
// the History it returns. It is safe for concurrent use, so members may
// be goroutines of one process; times come from the monotonic clock.
//
// What a Recorder cannot see, it leaves out: calls' Applied and Seq (only
// a simulation knows when a resource admitted a write), and the exact
// moment the election granted a term, for which it takes the moment the
// winning Node reported promoting (later than the grant, which makes
// CheckSingleActive more lenient, never stricter).
type Recorder struct {
	// CheckpointKey is the Store key of the checkpoint; its values are
	// decoded with replicate.DecodeCheckpoint.
	CheckpointKey string
	// DecodePos turns a replication position into a record count, for
	// the checkpoint checks. Required.
	DecodePos func(replicate.Position) (uint64, error)

	mu       sync.Mutex
	h        History
	versions map[string]map[storage.Version]string
}

func (r *Recorder) pos(p replicate.Position) int64 {
	n, err := r.DecodePos(p)
	if err != nil {
		return -1
	}
	return int64(n)
}

func (r *Recorder) cpPos(v []byte) int64 {
	cp, err := replicate.DecodeCheckpoint(v)
	if err != nil {
		return -1
	}
	return r.pos(cp.Pos)
}

func (r *Recorder) add(o Op) {
	r.mu.Lock()
	r.h.Ops = append(r.h.Ops, o)
	r.mu.Unlock()
}

// outcome classifies a call's error as its caller saw it. An error that
// is neither a refusal nor a miss may have come after the call took
// effect (a timeout, a lost connection): Unknown.
func outcome(err error) Outcome {
	switch {
	case err == nil:
		return OK
	case errors.Is(err, fence.ErrStale):
		return Stale
	case errors.Is(err, storage.ErrConflict):
		return Conflict
	case errors.Is(err, storage.ErrNotFound):
		return NotFound
	}
	return Unknown
}

func finish(o *Op, err error) {
	o.Outcome = outcome(err)
	if o.Outcome != Unknown {
		o.End = time.Now()
	}
}

// Store returns s recording every call member makes on it.
func (r *Recorder) Store(member string, s storage.Store) storage.Store {
	return &recStore{r: r, member: member, s: s}
}

type recStore struct {
	r      *Recorder
	member string
	s      storage.Store
}

func (s *recStore) op(kind OpKind, key string, t fence.Token) Op {
	return Op{Resource: "store", Member: s.member, Kind: kind, Key: key, Token: t, Pos: -1, Start: time.Now()}
}

func (s *recStore) Get(ctx context.Context, key string) (storage.Item, error) {
	o := s.op(OpGet, key, 0)
	it, err := s.s.Get(ctx, key)
	finish(&o, err)
	if err == nil {
		o.Value = string(it.Value)
		s.r.setVersion(key, it.Version, o.Value)
		if key == s.r.CheckpointKey {
			o.Pos = s.r.cpPos(it.Value)
		}
	}
	if o.Outcome != Unknown { // a read with no answer says nothing
		s.r.add(o)
	}
	return it, err
}

func (s *recStore) put(key string, t fence.Token, v []byte) Op {
	o := s.op(OpPut, key, t)
	o.Value = string(v)
	if key == s.r.CheckpointKey {
		o.Pos = s.r.cpPos(v)
	}
	return o
}

func (s *recStore) Put(ctx context.Context, t fence.Token, key string, v []byte) (storage.Version, error) {
	o := s.put(key, t, v)
	ver, err := s.s.Put(ctx, t, key, v)
	finish(&o, err)
	if err == nil {
		s.r.setVersion(key, ver, o.Value)
	}
	s.r.add(o)
	return ver, err
}

func (s *recStore) CompareAndSwap(ctx context.Context, t fence.Token, key string, old storage.Version, v []byte) (storage.Version, error) {
	o := s.put(key, t, v)
	// The history names values, not versions: look up the value that
	// had version old in what this recorder saw. If it saw none (the
	// write that made it went unanswered), the condition cannot be
	// checked; a conflict then counts as a call without effect.
	known := true
	if old != 0 {
		o.Prev, known = s.r.valueAt(key, old)
	}
	o.HasPrev = known
	ver, err := s.s.CompareAndSwap(ctx, t, key, old, v)
	finish(&o, err)
	if !known && o.Outcome == Conflict {
		o.Outcome = Failed
	}
	if err == nil {
		s.r.setVersion(key, ver, o.Value)
	}
	s.r.add(o)
	return ver, err
}

func (s *recStore) Delete(ctx context.Context, t fence.Token, key string) error {
	return s.s.Delete(ctx, t, key) // not recorded: the checkers know no deletes
}

// Versions seen, per key, to name the value a compare-and-swap expects.
func (r *Recorder) setVersion(key string, v storage.Version, val string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.versions == nil {
		r.versions = map[string]map[storage.Version]string{}
	}
	if r.versions[key] == nil {
		r.versions[key] = map[storage.Version]string{}
	}
	r.versions[key][v] = val
}

func (r *Recorder) valueAt(key string, v storage.Version) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	val, ok := r.versions[key][v]
	return val, ok
}

// Sink returns s recording every Apply and Position call member makes on
// it. The sink's fence is whatever s does with the token.
func (r *Recorder) Sink(member string, s replicate.DurableSink) replicate.DurableSink {
	return &recSink{r: r, member: member, s: s}
}

type recSink struct {
	r      *Recorder
	member string
	s      replicate.DurableSink
}

func (s *recSink) Apply(ctx context.Context, t fence.Token, batch []replicate.Record) error {
	o := Op{Resource: "sink", Member: s.member, Kind: OpApply, Token: t, Pos: -1, From: -1, Start: time.Now()}
	if len(batch) > 0 {
		o.Pos = s.r.pos(batch[len(batch)-1].Pos)
		o.From = o.Pos - int64(len(batch))
	}
	err := s.s.Apply(ctx, t, batch)
	finish(&o, err)
	s.r.add(o)
	return err
}

func (s *recSink) Position(ctx context.Context) (replicate.Position, error) {
	o := Op{Resource: "sink", Member: s.member, Kind: OpPosition, Pos: -1, Start: time.Now()}
	p, err := s.s.Position(ctx)
	finish(&o, err)
	if err == nil {
		o.Pos = s.r.pos(p)
		s.r.add(o)
	}
	return p, err
}

// Work returns w recording each of its runs for member: when it started,
// when its context ended (Run.Stopped) and when it returned.
func (r *Recorder) Work(member string, w ha.WorkFunc) ha.WorkFunc {
	return func(ctx context.Context, term lease.Term) error {
		t := term.Token()
		r.mu.Lock()
		r.h.Runs = append(r.h.Runs, Run{Member: member, Token: t, Interval: Interval{Start: time.Now()}, From: -1})
		i := len(r.h.Runs) - 1
		r.mu.Unlock()
		stop := context.AfterFunc(ctx, func() {
			now := time.Now()
			r.mu.Lock()
			r.h.Runs[i].Stopped = now
			r.mu.Unlock()
		})
		defer stop()
		err := w(ctx, term)
		now := time.Now()
		r.mu.Lock()
		r.h.Runs[i].End = now
		r.mu.Unlock()
		return err
	}
}

// OnEvent returns an ha.Config.OnEvent for member that records the term
// each promotion starts as a Grant, and then calls next (if not nil).
func (r *Recorder) OnEvent(member string, next func(ha.Event)) func(ha.Event) {
	return func(ev ha.Event) {
		if ev.Kind == ha.EventRole && ev.Role == ha.RolePromoting {
			now := time.Now()
			r.mu.Lock()
			r.h.Grants = append(r.h.Grants, Grant{Time: now, Leader: lease.Leader{ID: member, Token: ev.Token}})
			r.mu.Unlock()
		}
		if next != nil {
			next(ev)
		}
	}
}

// Healed records that the last fault healed now, for CheckLiveness with
// the given bound.
func (r *Recorder) Healed(bound time.Duration) {
	now := time.Now()
	r.mu.Lock()
	r.h.Healed, r.h.Bound = now, bound
	r.mu.Unlock()
}

// Stop marks the end of the observation: History's End, up to which
// CheckLiveness looks. Call it before stopping the members, whose runs
// end then. Without it, End is when History is called.
func (r *Recorder) Stop() {
	now := time.Now()
	r.mu.Lock()
	r.h.End = now
	r.mu.Unlock()
}

// History returns a copy of what was recorded so far, with source and
// target as the data of the source's and the sink's records (durable says
// whether the target must be an exact prefix of the source).
func (r *Recorder) History(source, target []replicate.Record, durable bool) *History {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.h
	h.Ops = append([]Op(nil), r.h.Ops...)
	h.Runs = append([]Run(nil), r.h.Runs...)
	h.Grants = append([]Grant(nil), r.h.Grants...)
	h.CheckpointKey, h.Durable = r.CheckpointKey, durable
	if h.End.IsZero() {
		h.End = time.Now()
	}
	h.Source, h.Target = nil, nil
	for _, rec := range source {
		h.Source = append(h.Source, string(rec.Data))
	}
	for _, rec := range target {
		h.Target = append(h.Target, string(rec.Data))
	}
	return &h
}
