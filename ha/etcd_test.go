package ha_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/ha"
	"github.com/hakit/hakit/lease/etcdlease"
	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/memrepl"
	"github.com/hakit/hakit/storage/etcdstore"
	"github.com/hakit/hakit/storage/etcdstore/etcdtest"
)

// etcdMember is a Node whose elector and checkpoint store reach a real etcd
// through a fault-injecting proxy of its own.
type etcdMember struct {
	id     string
	proxy  *etcdtest.Proxy
	node   *ha.Node
	cancel context.CancelFunc
	done   chan error
}

// TestNodeEtcdFailoversKeepTargetEqualToSource replicates a growing change
// stream into a DurableSink while the active member's link to etcd is cut
// again and again and operators switch over, and checks at the end that the
// target holds exactly the source's records, in order, once each.
func TestNodeEtcdFailoversKeepTargetEqualToSource(t *testing.T) {
	srv := etcdtest.Start(t)
	src := &memrepl.Source{}
	sink := &memrepl.DurableSink{}
	const total = 3000

	var members []*etcdMember
	for _, id := range []string{"a", "b", "c"} {
		m := &etcdMember{id: id, proxy: etcdtest.NewProxy(t, srv), done: make(chan error, 1)}
		cli := m.proxy.Client(t)
		el, err := etcdlease.New(etcdlease.Config{Client: cli, ID: id, Prefix: "/e2e/election", TTL: 2 * time.Second, DriftMargin: 300 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		store := etcdstore.New(cli, "/e2e/state/")
		m.node, err = ha.New(ha.Config{
			ID:          id,
			Elector:     el,
			HoldOff:     500 * time.Millisecond,
			StopTimeout: 3 * time.Second,
			Work: func(ctx context.Context, tok fence.Token) error {
				s := &replicate.Stream{Source: src, Sink: sink, Store: store, Key: "checkpoint",
					MaxRecords: 50, CheckpointRecords: 200, CheckpointInterval: 100 * time.Millisecond,
					HeartbeatInterval: -1, StopTimeout: time.Second}
				return s.Run(ctx, tok)
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		m.cancel = cancel
		go func() { m.done <- m.node.Run(ctx) }()
		members = append(members, m)
	}
	t.Cleanup(func() {
		for _, m := range members {
			m.cancel()
			<-m.done
		}
	})

	// The change stream grows while the faults happen.
	var wg sync.WaitGroup
	produce, stopProducing := context.WithCancel(context.Background())
	defer stopProducing()
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for i := 0; i < total; i++ {
			src.Append([]byte(fmt.Sprintf("record %05d", i)))
			if i%10 == 9 {
				select {
				case <-tick.C:
				case <-produce.Done():
					return
				}
			}
		}
	}()

	active := func() *etcdMember {
		t.Helper()
		var got *etcdMember
		eventually(t, "one active member", func() bool {
			got = nil
			n := 0
			for _, m := range members {
				if m.node.Status().Role == ha.RoleActive {
					got, n = m, n+1
				}
			}
			return n == 1
		})
		return got
	}
	progress := func() {
		t.Helper()
		from := sink.Len()
		eventually(t, "progress", func() bool { return sink.Len() > from || sink.Len() == total })
	}

	tokens := []fence.Token{active().node.Status().Token}
	for cycle := 0; cycle < 3; cycle++ {
		old := active()
		progress()
		// Crash failover: the active member's link to etcd goes dark.
		old.proxy.Blackhole(etcdtest.ToServer | etcdtest.ToClient)
		var next *etcdMember
		eventually(t, "a successor", func() bool {
			next = active()
			return next != old
		})
		old.proxy.Heal()
		tokens = append(tokens, next.node.Status().Token)
		progress()

		// Planned switchover away from the new active member.
		if err := next.node.Switchover(context.Background(), ""); err != nil {
			t.Fatalf("cycle %d: switchover: %v", cycle, err)
		}
		eventually(t, "a member other than "+next.id, func() bool { return active() != next })
		tokens = append(tokens, active().node.Status().Token)
	}
	for i := 1; i < len(tokens); i++ {
		if tokens[i] <= tokens[i-1] {
			t.Fatalf("tokens did not increase across terms: %v", tokens)
		}
	}

	wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := sink.WaitLen(ctx, total); err != nil {
		t.Fatalf("target has %d of %d records: %v", sink.Len(), total, err)
	}
	got, want := sink.Records(), src.Records()
	if len(got) != len(want) {
		t.Fatalf("target has %d records, source %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i].Data, want[i].Data) {
			t.Fatalf("record %d: target %q, source %q", i, got[i].Data, want[i].Data)
		}
	}
	t.Logf("%d records, %d terms, tokens %v", len(got), len(tokens), tokens)
}
