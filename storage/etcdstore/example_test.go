package etcdstore_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/lease"
	"github.com/hakit/hakit/storage"
	"github.com/hakit/hakit/storage/etcdstore"
	"github.com/hakit/hakit/storage/etcdstore/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func ExampleNew() {
	t := etcdtest.NewStandalone("example") // in a test: the test's *testing.T
	defer t.Close()
	cli := etcdtest.Start(t).Client(t) // in production: your clientv3.Client

	ctx := context.Background()
	s := etcdstore.New(cli, "myapp/")

	// The member holding term 7 writes its checkpoint.
	if _, err := s.Put(ctx, 7, "checkpoint", []byte("lsn 1200")); err != nil {
		fmt.Println(err)
		return
	}
	// Term 8 takes over and writes.
	if _, err := s.Put(ctx, 8, "checkpoint", []byte("lsn 1350")); err != nil {
		fmt.Println(err)
		return
	}
	// The old member wakes up from a pause and tries again: refused.
	_, err := s.Put(ctx, 7, "checkpoint", []byte("lsn 1210"))
	fmt.Println(errors.Is(err, fence.ErrStale))

	it, _ := s.Get(ctx, "checkpoint")
	fmt.Printf("%s\n", it.Value)
	// Output:
	// true
	// lsn 1350
}

func ExampleStore_Bind() {
	t := etcdtest.NewStandalone("example")
	defer t.Close()
	cli := etcdtest.Start(t).Client(t)
	ctx := context.Background()

	// An etcd elector holds its term as a leader key attached to a
	// lease; here we make one by hand.
	g, err := cli.Grant(ctx, 30)
	if err != nil {
		fmt.Println(err)
		return
	}
	put, err := cli.Put(ctx, "election/member-a", "a", clientv3.WithLease(g.ID))
	if err != nil {
		fmt.Println(err)
		return
	}
	token := fence.Token(put.Header.Revision) // the term's token: the key's create revision

	s := etcdstore.New(cli, "myapp/").Bind("election/member-a", put.Header.Revision)
	_, err = s.Put(ctx, token, "state", []byte("running"))
	fmt.Println("while held:", err)

	// The lease ends (expiry, revocation): no successor has written yet,
	// but the bound store refuses at once.
	if _, err := cli.Revoke(ctx, g.ID); err != nil {
		fmt.Println(err)
		return
	}
	_, err = s.Put(ctx, token, "state", []byte("late"))
	fmt.Println("after the lease ended:", errors.Is(err, lease.ErrLost))
	// Output:
	// while held: <nil>
	// after the lease ended: true
}

func ExampleNewBackend() {
	t := etcdtest.NewStandalone("example")
	defer t.Close()
	cli := etcdtest.Start(t).Client(t)
	ctx := context.Background()

	// The generic fencing wrapper over a plain etcd backend. New checks
	// the fence inside etcd and needs no retries under contention; this
	// is for code that wants the same wrapper over every backend.
	s := storage.Fenced(etcdstore.NewBackend(cli, "generic/"))
	v, err := s.CompareAndSwap(ctx, 3, "offset", 0, []byte("42"))
	fmt.Println(v > 0, err)
	_, err = s.CompareAndSwap(ctx, 3, "offset", 0, []byte("43"))
	fmt.Println(errors.Is(err, storage.ErrConflict))
	// Output:
	// true <nil>
	// true
}
