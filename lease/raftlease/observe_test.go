package raftlease

import (
	"fmt"
	"testing"
	"time"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/lease"
)

// TestObserveBounded: a reader that does not read holds at most
// maxObserveQueue changes; when it reads, it gets them in order and then
// the latest, and nothing after the latest.
func TestObserveBounded(t *testing.T) {
	g := &Group{observers: map[*observer]struct{}{}}
	ch := g.Observe(t.Context())
	var o *observer
	for ob := range g.observers {
		o = ob
	}
	const n = 10 * maxObserveQueue
	for i := 1; i <= n; i++ {
		g.publishHolder(lease.Leader{ID: fmt.Sprint("m", i), Token: fence.Token(i)})
	}
	o.mu <- struct{}{}
	queued := len(o.queue)
	<-o.mu
	if queued > maxObserveQueue+1 { // +1: the value the reader holds
		t.Fatalf("%d changes queued for a reader that does not read", queued)
	}
	prev := fence.Token(0)
	deadline := time.After(10 * time.Second)
	for prev != n {
		select {
		case l := <-ch:
			if l.Token != 0 && l.Token <= prev {
				t.Fatalf("token %d after %d: out of order", l.Token, prev)
			}
			if l.Token != 0 {
				prev = l.Token
			}
		case <-deadline:
			t.Fatalf("the latest value (token %d) never came; the last was %d", n, prev)
		}
	}
	o.mu <- struct{}{}
	left := len(o.queue)
	<-o.mu
	if left != 0 {
		t.Fatalf("%d values queued after the latest", left)
	}
}
