package ha_test

import (
	"bytes"
	"context"
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

// benchSwitchover measures planned switchover: from the request to the
// successor's first accepted write, with a change stream flowing the whole
// time, and checks at the end that no record was lost or duplicated.
func benchSwitchover(b *testing.B, elector func(id string) lease.Elector, store storage.Store) {
	src := &memrepl.Source{}
	sink := newFirstWriteSink()
	var nodes []*ha.Node
	var stops []func()
	for _, id := range []string{"a", "b", "c"} {
		n, err := ha.New(ha.Config{
			ID: id, Elector: elector(id), HoldOff: 50 * time.Millisecond,
			Work: func(ctx context.Context, t fence.Token) error {
				s := &replicate.Stream{Source: src, Sink: sink, Store: store, Key: "checkpoint",
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
		nodes = append(nodes, n)
		stops = append(stops, func() { cancel(); <-done })
	}
	defer func() {
		for _, stop := range stops {
			stop()
		}
	}()
	produce, stopProducing := context.WithCancel(context.Background())
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		tick := time.NewTicker(200 * time.Microsecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			src.Append([]byte(fmt.Sprintf("record %07d", i)))
			select {
			case <-tick.C:
			case <-produce.Done():
				return
			}
		}
	}()
	active := func() *ha.Node {
		for {
			for _, n := range nodes {
				if n.Status().Role == ha.RoleActive {
					return n
				}
			}
			select {
			case <-sink.wake:
			case <-time.After(time.Millisecond):
			}
		}
	}

	ctx := context.Background()
	var took []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cur := active()
		tok := cur.Status().Token
		if _, err := sink.firstAfter(ctx, tok-1); err != nil { // serving already
			b.Fatal(err)
		}
		start := time.Now()
		if err := cur.Switchover(ctx, ""); err != nil {
			b.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		at, err := sink.firstAfter(wctx, tok)
		cancel()
		if err != nil {
			b.Fatalf("no successor served within 30 s: %v", err)
		}
		took = append(took, at.Sub(start))
	}
	b.StopTimer()
	stopProducing()
	<-produced
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := sink.WaitLen(wctx, src.Len()); err != nil {
		b.Fatalf("target has %d of %d records: %v", sink.Len(), src.Len(), err)
	}
	got, want := sink.Records(), src.Records()
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
}
