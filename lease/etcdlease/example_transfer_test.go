package etcdlease_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/hakit/hakit/lease"
	"github.com/hakit/hakit/lease/etcdlease"
	"github.com/hakit/hakit/storage/etcdstore/etcdtest"
)

// ExampleElector_Transfer hands the lease to a named member although
// another member has waited longer.
func ExampleElector_Transfer() {
	t := etcdtest.NewStandalone("Example")
	defer t.Close()
	cli := etcdtest.Start(t).Client(t)
	ctx := context.Background()
	member := func(id string) *etcdlease.Elector {
		e, err := etcdlease.New(etcdlease.Config{Client: cli, ID: id, Prefix: "myservice/leader", TTL: 2 * time.Second})
		if err != nil {
			log.Fatal(err)
		}
		return e
	}
	a, b, c := member("a"), member("b"), member("c")
	defer a.Close()
	defer b.Close()
	defer c.Close()

	ta, err := a.Campaign(ctx)
	if err != nil {
		log.Fatal(err)
	}
	// b and c wait, b first; observe the line from b.
	obs := b.Observe(ctx)
	waiting := make(chan lease.Term, 2)
	for i, e := range []*etcdlease.Elector{b, c} {
		go func() {
			if t, err := e.Campaign(ctx); err == nil {
				waiting <- t
			}
		}()
		for { // wait until its key is in line
			resp, err := cli.Get(ctx, "myservice/leader/", clientv3WithPrefix()...)
			if err == nil && len(resp.Kvs) == 2+i {
				break
			}
			time.Sleep(10 * time.Millisecond) // polling interval
		}
	}

	if err := a.Transfer(ctx, "c"); err != nil {
		log.Fatal(err)
	}
	tc := <-waiting
	fmt.Println("a's term ended:", ta.Err() != nil)
	fmt.Println("c's token is larger:", tc.Token() > ta.Token())
	fmt.Println("observed:", (<-obs).ID, (<-obs).ID)
	// Output:
	// a's term ended: true
	// c's token is larger: true
	// observed: a c
}
