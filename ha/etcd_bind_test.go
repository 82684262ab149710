package ha_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/ha"
	"github.com/hakit/hakit/lease"
	"github.com/hakit/hakit/lease/etcdlease"
	"github.com/hakit/hakit/storage/etcdstore"
	"github.com/hakit/hakit/storage/etcdstore/etcdtest"
)

// The work of a Node on etcd binds its writes to its term with
// etcdstore.BindTerm. The member is cut off from etcd; its term ends, and
// the work, which goes on writing (a work that ignores its context, or a
// process that was frozen), sees its first write after etcd has let the
// lease go fail with lease.ErrLost. No successor has written, so fencing
// alone would have admitted that write.
func TestWorkWritesThroughBindTermFailWhenCutOff(t *testing.T) {
	srv := etcdtest.Start(t)
	proxy := etcdtest.NewProxy(t, srv)
	cli := proxy.Client(t)
	el, err := etcdlease.New(etcdlease.Config{Client: cli, ID: "a", Prefix: "bind/election", TTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	store := etcdstore.New(cli, "bind/state/")
	type outcome struct {
		tok fence.Token
		n   int
		err error
	}
	wrote := make(chan int, 1000)
	result := make(chan outcome, 1)
	stopWriting := make(chan struct{})
	n, err := ha.New(ha.Config{
		ID: "a", Elector: el, HoldOff: time.Hour, StopTimeout: 200 * time.Millisecond,
		Restart: ha.RestartPolicy{Max: -1},
		Work: func(ctx context.Context, term lease.Term) error {
			holder, ok := term.(etcdstore.LeaderKeyHolder)
			if !ok {
				return fmt.Errorf("the term (%T) is not an etcd term", term)
			}
			bound := store.BindTerm(holder)
			for i := 1; ; i++ {
				wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 300*time.Millisecond)
				_, err := bound.Put(wctx, term.Token(), "progress", fmt.Appendf(nil, "%d", i))
				cancel()
				switch {
				case err == nil:
					wrote <- i
				case errors.Is(err, lease.ErrLost) || errors.Is(err, fence.ErrStale):
					result <- outcome{tok: term.Token(), n: i, err: err}
					return err
				default:
					// Cut off, or reconnecting: keep trying, as a
					// zombie would.
				}
				select {
				case <-stopWriting:
					return nil
				case <-time.After(20 * time.Millisecond): // pacing a writer, not waiting for an event
				}
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() {
		close(stopWriting)
		proxy.Heal()
		cancel()
		<-done
	})
	last := 0
	select {
	case last = <-wrote:
	case <-time.After(20 * time.Second):
		t.Fatal("the work never wrote")
	}

	proxy.Blackhole(etcdtest.Both)
	eventually(t, "the cut-off member to leave the active role", func() bool { return n.Status().Role != ha.RoleActive })
	// Let etcd expire the lease (TTL, plus its expiry scan), then heal.
	waitLeaseGone(t, srv, "bind/election/")
	proxy.Heal()

	select {
	case r := <-result:
		if !errors.Is(r.err, lease.ErrLost) {
			t.Fatalf("write %d under token %d after the lease was gone: %v; want lease.ErrLost (the fence alone admits it)", r.n, r.tok, r.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the work's writes after the lease was gone neither failed nor stopped")
	}
	// Nothing landed after the cut: the stored value is one the work
	// reported as written before.
	it, err := etcdstore.New(srv.Client(t), "bind/state/").Get(context.Background(), "progress")
	if err != nil {
		t.Fatal(err)
	}
	for len(wrote) > 0 {
		last = <-wrote
	}
	if string(it.Value) != fmt.Sprint(last) {
		t.Fatalf("stored progress %q, want the last acknowledged write %d", it.Value, last)
	}
}

// waitLeaseGone polls etcd directly until no key is left under prefix (the
// leader key goes with its lease).
func waitLeaseGone(t *testing.T, srv *etcdtest.Server, prefix string) {
	t.Helper()
	cli := srv.Client(t)
	eventually(t, "etcd to expire the cut-off member's lease", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
		return err == nil && len(resp.Kvs) == 0
	})
}
