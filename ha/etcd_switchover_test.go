package ha_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/ha"
	"github.com/hakit/hakit/lease/etcdlease"
	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/memrepl"
	"github.com/hakit/hakit/storage/etcdstore"
	"github.com/hakit/hakit/storage/etcdstore/etcdtest"
)

// TestNodeEtcdSwitchoverToNamedMember: on etcd, a switchover to c makes c
// active although b has campaigned longer, b never becomes active, tokens
// increase, and the target ends equal to the source while records flow
// the whole time.
func TestNodeEtcdSwitchoverToNamedMember(t *testing.T) {
	srv := etcdtest.Start(t)
	src := &memrepl.Source{}
	sink := &memrepl.DurableSink{}
	const total = 2000

	var mu sync.Mutex
	activeTokens := map[string][]fence.Token{} // member -> tokens it became active with
	nodes := map[string]*ha.Node{}
	start := func(id string) {
		t.Helper()
		cli := etcdtest.NewProxy(t, srv).Client(t)
		el, err := etcdlease.New(etcdlease.Config{Client: cli, ID: id, Prefix: "/switch/election", TTL: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		store := etcdstore.New(cli, "/switch/state/")
		n, err := ha.New(ha.Config{
			ID: id, Elector: el, HoldOff: 500 * time.Millisecond, StopTimeout: 3 * time.Second,
			OnEvent: func(ev ha.Event) {
				if ev.Kind == ha.EventRole && ev.Role == ha.RoleActive {
					mu.Lock()
					activeTokens[id] = append(activeTokens[id], ev.Token)
					mu.Unlock()
				}
			},
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
		done := make(chan error, 1)
		go func() { done <- n.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		nodes[id] = n
	}

	// A Node reports RoleCampaigning before its campaign key is in etcd;
	// count the keys to know the order in which b and c wait.
	admin := srv.Client(t)
	inLine := func(n int64) func() bool {
		return func() bool {
			resp, err := admin.Get(context.Background(), "/switch/election/", clientv3.WithPrefix(), clientv3.WithCountOnly())
			return err == nil && resp.Count == n
		}
	}
	start("a")
	eventually(t, "a active", func() bool { return nodes["a"].Status().Role == ha.RoleActive })
	start("b")
	eventually(t, "b waiting", inLine(2))
	start("c")
	eventually(t, "c waiting", inLine(3))

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for i := 0; i < total; i++ {
			src.Append([]byte(fmt.Sprintf("record %05d", i)))
			if i%10 == 9 {
				<-tick.C
			}
		}
	}()
	eventually(t, "a replicating", func() bool { return sink.Len() > 0 })

	from := nodes["a"].Status().Token
	began := time.Now()
	if err := nodes["a"].Switchover(context.Background(), "c"); err != nil {
		t.Fatalf("switchover to c: %v", err)
	}
	eventually(t, "c active", func() bool { return nodes["c"].Status().Role == ha.RoleActive })
	t.Logf("c active %v after the switchover request", time.Since(began))
	to := nodes["c"].Status().Token
	if to <= from {
		t.Fatalf("c's token %d is not above a's %d", to, from)
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
	mu.Lock()
	defer mu.Unlock()
	if len(activeTokens["b"]) != 0 {
		t.Fatalf("b became active with tokens %v; the switchover named c", activeTokens["b"])
	}
	if len(activeTokens["c"]) != 1 || activeTokens["c"][0] != to {
		t.Fatalf("c became active with tokens %v, want once with %d", activeTokens["c"], to)
	}
}
