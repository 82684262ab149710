package raftnet_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/hakit/hakit/ha/hatest/raftnet"
	"github.com/hakit/hakit/lease/raftlease"
)

// Three members of a Raft group in one process; the leader is cut off in
// one direction (it hears the others, they do not hear it), and another
// member is elected.
func Example() {
	net := raftnet.New(1, nil)
	peers := map[string]string{"a": "a", "b": "b", "c": "c"}
	groups := map[string]*raftlease.Group{}
	for id := range peers {
		dir, err := os.MkdirTemp("", "raftnet-example")
		if err != nil {
			panic(err)
		}
		defer os.RemoveAll(dir)
		g, err := raftlease.Start(context.Background(), raftlease.Config{ID: id, Peers: peers, DataDir: dir,
			TickInterval: 10 * time.Millisecond, DriftMargin: 30 * time.Millisecond, Transport: net.Transport(id)})
		if err != nil {
			panic(err)
		}
		defer g.Close()
		groups[id] = g
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	first, err := groups["a"].Campaign(ctx)
	if err != nil {
		panic(err)
	}
	for id := range peers {
		if id != "a" {
			net.Cut("a", id)
		}
	}
	second, err := groups["b"].Campaign(ctx)
	if err != nil {
		panic(err)
	}
	<-first.Done() // a fences itself: it no longer hears a quorum
	fmt.Println("newer token:", second.Token() > first.Token())
	// Output:
	// newer token: true
}
