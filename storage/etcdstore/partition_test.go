package etcdstore_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hakit/hakit/lease"
	"github.com/hakit/hakit/storage/etcdstore"
	"github.com/hakit/hakit/storage/etcdstore/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestDelayedWriteAfterLeaseEnd holds a bound write in the network (the
// writer's link paused) until the writer's lease has expired, then lets
// it through: etcd must refuse it, although no successor has written and
// the token is still the highest. The same write unbound goes through,
// which is the gap binding closes.
func TestDelayedWriteAfterLeaseEnd(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	direct := srv.Client(t)
	ctx := t.Context()

	for _, bound := range []bool{true, false} {
		p := etcdtest.NewProxy(t, srv)
		writer := p.Client(t)
		key, rev := leaderKey(t, direct, 1)
		prefix := freshPrefix(t)
		s := etcdstore.New(writer, prefix)
		if bound {
			s = s.Bind(key, rev)
		}
		if _, err := s.Put(ctx, 5, "k", []byte("on time")); err != nil {
			t.Fatalf("bound=%v: Put while the lease is held: %v", bound, err)
		}

		p.Pause(etcdtest.ToServer)
		errc := make(chan error, 1)
		go func() {
			c, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			_, err := s.Put(c, 5, "k", []byte("delayed"))
			errc <- err
		}()
		waitLeaseGone(t, direct, key)
		p.Unpause(etcdtest.ToServer)
		err := <-errc

		got, gerr := etcdstore.New(direct, prefix).Get(ctx, "k")
		if gerr != nil {
			t.Fatal(gerr)
		}
		if bound {
			if !errors.Is(err, lease.ErrLost) || !strings.Contains(err.Error(), key) {
				t.Fatalf("delayed bound Put after the lease ended: %v, want lease.ErrLost naming %q", err, key)
			}
			if string(got.Value) != "on time" {
				t.Fatalf("a refused bound Put left %q", got.Value)
			}
		} else if err != nil || string(got.Value) != "delayed" {
			t.Fatalf("delayed unbound Put: %v, value %q; want it applied", err, got.Value)
		}
	}
}

// waitLeaseGone polls until etcd has deleted key with its expired lease.
func waitLeaseGone(t *testing.T, cli *clientv3.Client, key string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := cli.Get(t.Context(), key)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("leader key %q still present after 15 s", key)
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
}
