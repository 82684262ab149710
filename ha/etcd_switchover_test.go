package ha_test

import (
	"context"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/ha"
	"github.com/hakit/hakit/replicate/memrepl"
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
		nodes[id] = startEtcdMember(t, srv, "/switch", id, src, sink, func(cfg *ha.Config) {
			cfg.OnEvent = func(ev ha.Event) {
				if ev.Kind == ha.EventRole && ev.Role == ha.RoleActive {
					mu.Lock()
					activeTokens[id] = append(activeTokens[id], ev.Token)
					mu.Unlock()
				}
			}
		}).node
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

	produced := produce(src, total)
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

	<-produced
	checkTargetEqualsSource(t, src, sink, total)
	mu.Lock()
	defer mu.Unlock()
	if len(activeTokens["b"]) != 0 {
		t.Fatalf("b became active with tokens %v; the switchover named c", activeTokens["b"])
	}
	if len(activeTokens["c"]) != 1 || activeTokens["c"][0] != to {
		t.Fatalf("c became active with tokens %v, want once with %d", activeTokens["c"], to)
	}
}
