package ha_test

import (
	"context"
	"testing"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/ha"
	"github.com/hakit/hakit/replicate/memrepl"
	"github.com/hakit/hakit/storage/etcdstore/etcdtest"
)

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
		members = append(members, startEtcdMember(t, srv, "/e2e", id, src, sink, nil))
	}
	produced := produce(src, total)

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
	<-produced
	checkTargetEqualsSource(t, src, sink, total)
	t.Logf("%d records, %d terms, tokens %v", total, len(tokens), tokens)
}
