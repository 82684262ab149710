package etcdlease_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/hakit/hakit/lease"
	"github.com/hakit/hakit/lease/etcdlease"
	"github.com/hakit/hakit/storage/etcdstore"
	"github.com/hakit/hakit/storage/etcdstore/etcdtest"
)

// Example shows the wiring of a member: campaign, run the work under a
// context that ends with the term, bind storage writes to the term, and
// resign on switchover or shutdown.
func Example() {
	t := etcdtest.NewStandalone("Example") // in a test, the test's *testing.T; in production, a real etcd client
	defer t.Close()
	cli := etcdtest.Start(t).Client(t)

	e, err := etcdlease.New(etcdlease.Config{
		Client: cli,
		ID:     "node-a",
		Addr:   "10.0.0.1:7000",
		Prefix: "myservice/leader",
		TTL:    5 * time.Second, // DriftMargin defaults to TTL/10
	})
	if err != nil {
		log.Fatal(err)
	}
	defer e.Close()

	ctx := context.Background()
	lt, err := e.Campaign(ctx) // blocks until this member leads
	if err != nil {
		log.Fatal(err)
	}
	term := lt.(*etcdlease.Term)

	// The work stops when the term ends: Done closes before etcd can give
	// the lease to anyone else.
	// Pass work to everything the leader runs.
	work, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		<-term.Done()
		stop()
	}()

	// Writes that matter carry the token and are bound to the term.
	store := etcdstore.New(cli, "myservice/data/").BindTerm(term)
	if _, err := store.Put(work, term.Token(), "checkpoint", []byte("pos=42")); err != nil {
		log.Fatal(err)
	}

	l, _ := e.Leader(ctx)
	fmt.Println("leader:", l.ID, l.Addr)

	// Switchover or shutdown: Done closes first, then the lease is revoked
	// so that a waiting member wins at once.
	if err := term.Resign(ctx); err != nil {
		log.Fatal(err)
	}
	<-work.Done()
	fmt.Println("resigned:", errors.Is(term.Err(), lease.ErrResigned))
	_, err = store.Put(ctx, term.Token(), "checkpoint", []byte("pos=43"))
	fmt.Println("late write refused:", errors.Is(err, lease.ErrLost))
	// Output:
	// leader: node-a 10.0.0.1:7000
	// resigned: true
	// late write refused: true
}
