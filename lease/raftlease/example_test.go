package raftlease_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"os"

	"github.com/hakit/hakit/lease/raftlease"
)

// A one-member group: it elects itself, and its store takes fenced
// writes. A real deployment lists three or five members in Peers, each
// starting with its own ID and DataDir.
func Example() {
	dir, err := os.MkdirTemp("", "raftlease-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ln, err := net.Listen("tcp", "127.0.0.1:0") // pick a free port
	if err != nil {
		log.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	ctx := context.Background()
	g, err := raftlease.Start(ctx, raftlease.Config{
		ID:      "replicator-1",
		Peers:   map[string]string{"replicator-1": addr},
		DataDir: dir,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer g.Close()

	term, err := g.Campaign(ctx) // blocks until this member holds the lease
	if err != nil {
		log.Fatal(err)
	}
	store := g.Store()
	if _, err := store.Put(ctx, term.Token(), "checkpoint", []byte("lsn 42")); err != nil {
		log.Fatal(err)
	}
	it, err := store.Get(ctx, "checkpoint")
	if err != nil {
		log.Fatal(err)
	}
	leader, _ := g.Leader(ctx)
	fmt.Printf("%s holds the lease; checkpoint %q\n", leader.ID, it.Value)
	// Output: replicator-1 holds the lease; checkpoint "lsn 42"
}
