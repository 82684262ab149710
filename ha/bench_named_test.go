package ha_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/ha"
	"github.com/hakit/hakit/lease"
	"github.com/hakit/hakit/lease/etcdlease"
	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/memrepl"
	"github.com/hakit/hakit/storage"
	"github.com/hakit/hakit/storage/etcdstore"
	"github.com/hakit/hakit/storage/etcdstore/etcdtest"
)

// benchSwitchoverNamed is benchSwitchover with a named successor: each
// switchover names the member that stepped down last, which waits behind
// a member that has waited longer, so every handover makes that member
// give way. inLine reports whether a member's campaign is waiting; the
// wait for it is outside the measured time.
func benchSwitchoverNamed(b *testing.B, elector func(id string) lease.Elector, store storage.Store, inLine func(ctx context.Context, id string) bool) {
	src := &memrepl.Source{}
	sink := newFirstWriteSink()
	ids := []string{"a", "b", "c"}
	nodes := map[string]*ha.Node{}
	var stops []func()
	defer func() {
		for _, stop := range stops {
			stop()
		}
	}()
	for _, id := range ids {
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
		nodes[id] = n
		stops = append(stops, func() { cancel(); <-done })
	}
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
	poll := func(what string, cond func() bool) {
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				b.Fatalf("timed out waiting for %s", what)
			}
			select {
			case <-sink.wake:
			case <-time.After(time.Millisecond):
			}
		}
	}
	active := func() string {
		var got string
		poll("an active member", func() bool {
			for _, id := range ids {
				if nodes[id].Status().Role == ha.RoleActive {
					got = id
					return true
				}
			}
			return false
		})
		return got
	}

	ctx := context.Background()
	var took []time.Duration
	prev := ""
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cur := active()
		tok := nodes[cur].Status().Token
		if _, err := sink.firstAfter(ctx, tok-1); err != nil { // serving already
			b.Fatal(err)
		}
		to := prev
		if to == "" {
			to = ids[(slices.Index(ids, cur)+1)%len(ids)]
		}
		poll(to+" waiting", func() bool { return inLine(ctx, to) })
		start := time.Now()
		if err := nodes[cur].Switchover(ctx, to); err != nil {
			b.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		at, err := sink.firstAfter(wctx, tok)
		cancel()
		if err != nil {
			b.Fatalf("no successor served within 30 s: %v", err)
		}
		took = append(took, at.Sub(start))
		if now := active(); now != to {
			b.Fatalf("switchover from %s to %s made %s active", cur, to, now)
		}
		prev = cur
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

// BenchmarkSwitchoverNamed is BenchmarkSwitchover's etcd case with a named
// successor that is not first in line.
func BenchmarkSwitchoverNamed(b *testing.B) {
	b.Run("etcd-named", func(b *testing.B) {
		srv := etcdtest.Start(b)
		cli := srv.Client(b)
		const prefix = "/bench/election/"
		// inLine reads the member records under the election prefix; it
		// knows only that a record is a JSON object with the member's ID.
		inLine := func(ctx context.Context, id string) bool {
			resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
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
