package ha_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/ha"
	"github.com/hakit/hakit/lease"
	"github.com/hakit/hakit/lease/clock"
	"github.com/hakit/hakit/lease/etcdlease"
	"github.com/hakit/hakit/lease/memlease"
	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/memrepl"
	"github.com/hakit/hakit/storage"
	"github.com/hakit/hakit/storage/etcdstore"
	"github.com/hakit/hakit/storage/etcdstore/etcdtest"
	"github.com/hakit/hakit/storage/memstore"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// firstWriteSink is a DurableSink that notes when each term's first batch
// was accepted: the moment a successor is really serving.
type firstWriteSink struct {
	memrepl.DurableSink
	mu    sync.Mutex
	first map[fence.Token]time.Time
	wake  chan struct{}
}

func newFirstWriteSink() *firstWriteSink {
	return &firstWriteSink{first: map[fence.Token]time.Time{}, wake: make(chan struct{}, 1)}
}

func (s *firstWriteSink) Apply(ctx context.Context, t fence.Token, batch []replicate.Record) error {
	if err := s.DurableSink.Apply(ctx, t, batch); err != nil {
		return err
	}
	if len(batch) == 0 {
		return nil // a Stream's opening Apply fences the sink; it carries no record
	}
	s.mu.Lock()
	if _, ok := s.first[t]; !ok {
		s.first[t] = time.Now()
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	s.mu.Unlock()
	return nil
}

// firstAfter waits for the first accepted write under a token above t.
func (s *firstWriteSink) firstAfter(ctx context.Context, t fence.Token) (time.Time, error) {
	for {
		s.mu.Lock()
		var at time.Time
		for tok, when := range s.first {
			if tok > t && (at.IsZero() || when.Before(at)) {
				at = when
			}
		}
		s.mu.Unlock()
		if !at.IsZero() {
			return at, nil
		}
		select {
		case <-s.wake:
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		}
	}
}

// switchoverRig is three Nodes replicating a change stream that grows the
// whole time into a sink that notes each term's first write.
type switchoverRig struct {
	b     *testing.B
	ids   []string
	nodes map[string]*ha.Node
	src   *memrepl.Source
	sink  *firstWriteSink
	stop  func()
}

func newSwitchoverRig(b *testing.B, elector func(id string) lease.Elector, store storage.Store) *switchoverRig {
	r := &switchoverRig{b: b, ids: []string{"a", "b", "c"}, nodes: map[string]*ha.Node{}, src: &memrepl.Source{}, sink: newFirstWriteSink()}
	var stops []func()
	for _, id := range r.ids {
		n, err := ha.New(ha.Config{
			ID: id, Elector: elector(id), HoldOff: 50 * time.Millisecond,
			Work: func(ctx context.Context, term lease.Term) error {
				t := term.Token()
				s := &replicate.Stream{Source: r.src, Sink: r.sink, Store: store, Key: "checkpoint",
					MaxRecords: 100, CheckpointInterval: 100 * time.Millisecond, HeartbeatInterval: -1}
				return s.Run(ctx, t)
			},
		})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = n.Run(ctx) }()
		r.nodes[id] = n
		stops = append(stops, func() { cancel(); <-done })
	}
	produce, stopProducing := context.WithCancel(context.Background())
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		tick := time.NewTicker(200 * time.Microsecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			r.src.Append([]byte(fmt.Sprintf("record %07d", i)))
			select {
			case <-tick.C:
			case <-produce.Done():
				return
			}
		}
	}()
	r.stop = func() {
		stopProducing()
		<-produced
		for _, stop := range stops {
			stop()
		}
	}
	return r
}

// poll waits for cond, waking on the sink's writes or every millisecond.
func (r *switchoverRig) poll(what string, cond func() bool) {
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			r.b.Fatalf("timed out waiting for %s", what)
		}
		select {
		case <-r.sink.wake:
		case <-time.After(time.Millisecond):
		}
	}
}

// active waits for an active member and returns its ID.
func (r *switchoverRig) active() string {
	var got string
	r.poll("an active member", func() bool {
		for _, id := range r.ids {
			if r.nodes[id].Status().Role == ha.RoleActive {
				got = id
				return true
			}
		}
		return false
	})
	return got
}

// switchover asks the active member to hand over to to ("" for any) and
// returns the time from the request to the successor's first accepted
// write. ready, if set, is waited for before the clock starts.
func (r *switchoverRig) switchover(to string, ready func() bool) (from string, took time.Duration) {
	ctx := context.Background()
	cur := r.active()
	tok := r.nodes[cur].Status().Token
	if _, err := r.sink.firstAfter(ctx, tok-1); err != nil { // serving already
		r.b.Fatal(err)
	}
	if ready != nil {
		r.poll(to+" ready", ready)
	}
	start := time.Now()
	if err := r.nodes[cur].Switchover(ctx, to); err != nil {
		r.b.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	at, err := r.sink.firstAfter(wctx, tok)
	if err != nil {
		r.b.Fatalf("no successor served within 30 s: %v", err)
	}
	if to != "" {
		if now := r.active(); now != to {
			r.b.Fatalf("switchover from %s to %s made %s active", cur, to, now)
		}
	}
	return cur, at.Sub(start)
}

// finish stops the rig, checks that the target holds every record once and
// in order, and reports the switchover times.
func (r *switchoverRig) finish(took []time.Duration) {
	b := r.b
	b.StopTimer()
	r.stop()
	wctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.sink.WaitLen(wctx, r.src.Len()); err != nil {
		b.Fatalf("target has %d of %d records: %v", r.sink.Len(), r.src.Len(), err)
	}
	got, want := r.sink.Records(), r.src.Records()
	lost, dup := 0, len(got)-len(want)
	for i := range want {
		if i >= len(got) || !bytes.Equal(got[i].Data, want[i].Data) {
			lost++
		}
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(took[len(took)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(lost), "lost")
	b.ReportMetric(float64(max(dup, 0)), "duplicated")
}

// benchSwitchover measures planned switchover to any member: from the
// request to the successor's first accepted write, with a change stream
// flowing the whole time; at the end no record may be lost or duplicated.
func benchSwitchover(b *testing.B, elector func(id string) lease.Elector, store storage.Store) {
	r := newSwitchoverRig(b, elector, store)
	var took []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_, d := r.switchover("", nil)
		took = append(took, d)
	}
	r.finish(took)
}

// benchSwitchoverNamed is benchSwitchover with a named successor: each
// switchover names the member that stepped down last, which waits behind a
// member that has waited longer, so every handover makes that member give
// way. inLine reports whether a member's campaign is queued; the wait for it
// is outside the measured time.
func benchSwitchoverNamed(b *testing.B, elector func(id string) lease.Elector, store storage.Store, inLine func(id string) bool) {
	r := newSwitchoverRig(b, elector, store)
	var took []time.Duration
	prev := ""
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		to := prev
		if to == "" {
			cur := r.active()
			to = r.ids[(slices.Index(r.ids, cur)+1)%len(r.ids)]
		}
		from, d := r.switchover(to, func() bool { return inLine(to) })
		took = append(took, d)
		prev = from
	}
	r.finish(took)
}

func BenchmarkSwitchover(b *testing.B) {
	b.Run("memlease", func(b *testing.B) {
		el, err := memlease.NewElection(clock.Real(), memlease.Options{TTL: 2 * time.Second})
		if err != nil {
			b.Fatal(err)
		}
		benchSwitchover(b, func(id string) lease.Elector {
			m, err := el.Member(id, "")
			if err != nil {
				b.Fatal(err)
			}
			return m
		}, memstore.New())
	})
	b.Run("etcd", func(b *testing.B) {
		srv := etcdtest.Start(b)
		cli := srv.Client(b)
		benchSwitchover(b, func(id string) lease.Elector {
			e, err := etcdlease.New(etcdlease.Config{Client: srv.Client(b), ID: id, Prefix: "/bench/election", TTL: 2 * time.Second})
			if err != nil {
				b.Fatal(err)
			}
			return e
		}, etcdstore.New(cli, "/bench/state/"))
	})
	b.Run("etcd-named", func(b *testing.B) {
		srv := etcdtest.Start(b)
		cli := srv.Client(b)
		const prefix = "/bench/election/"
		// inLine looks for the member's campaign record under the
		// election prefix; it knows only that the record is a JSON object
		// with the member's ID.
		inLine := func(id string) bool {
			resp, err := cli.Get(context.Background(), prefix, clientv3.WithPrefix())
			if err != nil {
				return false
			}
			for _, kv := range resp.Kvs {
				var rec struct {
					ID string `json:"id"`
				}
				if json.Unmarshal(kv.Value, &rec) == nil && rec.ID == id {
					return true
				}
			}
			return false
		}
		benchSwitchoverNamed(b, func(id string) lease.Elector {
			e, err := etcdlease.New(etcdlease.Config{Client: srv.Client(b), ID: id, Prefix: prefix, TTL: 2 * time.Second})
			if err != nil {
				b.Fatal(err)
			}
			return e
		}, etcdstore.New(cli, "/bench/state/"), inLine)
	})
}
