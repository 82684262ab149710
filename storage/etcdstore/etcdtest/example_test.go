package etcdtest_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hakit/hakit/storage/etcdstore/etcdtest"
)

func ExampleStart() {
	t := etcdtest.NewStandalone("example") // in a test: the test's *testing.T
	defer t.Close()

	s := etcdtest.Start(t)
	cli := s.Client(t)
	ctx := context.Background()
	if _, err := cli.Put(ctx, "greeting", "hello"); err != nil {
		fmt.Println(err)
		return
	}
	resp, err := cli.Get(ctx, "greeting")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%s\n", resp.Kvs[0].Value)
	// Output: hello
}

func ExampleNewProxy() {
	t := etcdtest.NewStandalone("example")
	defer t.Close()

	s := etcdtest.Start(t)
	p := etcdtest.NewProxy(t, s)
	cli := p.Client(t) // reaches s only through p

	p.Blackhole(etcdtest.Both) // partition this client
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	_, err := cli.Get(ctx, "k")
	cancel()
	fmt.Println("cut off:", errors.Is(err, context.DeadlineExceeded))

	p.Heal()
	// The interrupted connection is broken; the client reconnects.
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		_, err = cli.Get(ctx, "k")
		cancel()
		if err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Println("healed")
	// Output:
	// cut off: true
	// healed
}

func ExampleWithTLS() {
	t := etcdtest.NewStandalone("example")
	defer t.Close()

	s := etcdtest.Start(t, etcdtest.WithTLS())
	cli := s.Client(t) // trusts the server's CA, presents a client certificate
	_, err := cli.Put(context.Background(), "k", "v")
	fmt.Println(s.Endpoints()[0][:8], err)
	// Output: https:// <nil>
}
