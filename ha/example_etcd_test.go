package ha_test

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/hakit/hakit/ha"
	"github.com/hakit/hakit/lease/etcdlease"
	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/memrepl"
	"github.com/hakit/hakit/storage/etcdstore"
	"github.com/hakit/hakit/storage/etcdstore/etcdtest"
)

// The etcd wiring: an etcdlease elector and an etcdstore store on one etcd
// client. The Stream runs as the Node's work with RunTerm, which binds the
// checkpoint store to the term (etcdstore is a lease.TermBinder): once the
// term's lease is gone, its writes fail with lease.ErrLost, even before a
// successor has written. A work of your own binds its writes the same way
// with store.BindTerm(term.(etcdstore.LeaderKeyHolder)) or store.ForTerm.
func Example_etcd() {
	t := etcdtest.NewStandalone("Example_etcd") // in production: a clientv3.Client of your etcd cluster
	defer t.Close()
	cli := etcdtest.Start(t).Client(t)

	elector, err := etcdlease.New(etcdlease.Config{Client: cli, ID: "a", Addr: "https://a.example:8443", Prefix: "app/election/"})
	if err != nil {
		panic(err)
	}
	store := etcdstore.New(cli, "app/state/")
	src, sink := &memrepl.Source{}, &memrepl.DurableSink{}
	src.Append([]byte("one"), []byte("two"), []byte("three"))
	stream := &replicate.Stream{Source: src, Sink: sink.Conditional(), Store: store, Key: "checkpoint"}

	quiet := slog.New(slog.DiscardHandler)
	stream.Logger = quiet
	node, err := ha.New(ha.Config{ID: "a", Elector: elector, Work: stream.RunTerm, Logger: quiet})
	if err != nil {
		panic(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- node.Run(ctx) }()

	wait, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := sink.WaitLen(wait, 3); err != nil {
		panic(err)
	}
	fmt.Println("role:", node.Status().Role)
	stop() // drain: the Stream writes its final checkpoint, then the Node resigns
	if err := <-done; err != nil {
		panic(err)
	}
	cp, _, err := replicate.LoadCheckpoint(context.Background(), store, "checkpoint")
	if err != nil {
		panic(err)
	}
	fmt.Printf("copied %d records; checkpoint at %x\n", sink.Len(), cp.Pos)
	// Output:
	// role: active
	// copied 3 records; checkpoint at 0000000000000003
}
