package memlease_test

import (
	"context"
	"fmt"
	"time"

	"github.com/hakit/hakit/lease/clock"
	"github.com/hakit/hakit/lease/memlease"
)

// A holder cut off from the election ends its own term DriftMargin before
// the election lets anyone else have the lease. On a fake clock every step
// happens inside Advance, so the timeline is exact.
func ExampleElection_Isolate() {
	f := clock.NewFake(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	start := f.Now()
	election, err := memlease.NewElection(f, memlease.Options{TTL: time.Second, DriftMargin: 100 * time.Millisecond})
	if err != nil {
		panic(err)
	}
	a, _ := election.Member("a", "10.0.0.1:7000")
	b, _ := election.Member("b", "10.0.0.2:7000")
	ctx := context.Background()

	ta, _ := a.Campaign(ctx)
	fmt.Println("a leads with token", ta.Token())

	election.Isolate("a")
	f.Advance(900 * time.Millisecond)
	<-ta.Done()
	fmt.Printf("at %v: %v\n", f.Now().Sub(start), ta.Err())
	fmt.Printf("at %v: the election still counts %s\n", f.Now().Sub(start), election.Holder().ID)

	f.Advance(100 * time.Millisecond)
	fmt.Printf("at %v: lease free: %v\n", f.Now().Sub(start), election.Holder().IsZero())
	tb, _ := b.Campaign(ctx)
	fmt.Println("b leads with token", tb.Token())
	// Output:
	// a leads with token 1
	// at 900ms: memlease: member "a" term 1: self-fencing deadline passed: lease: lost
	// at 900ms: the election still counts a
	// at 1s: lease free: true
	// b leads with token 2
}

// A paused holder (a long GC pause, SIGSTOP) cannot fence itself: its
// Done is still open after a successor has won. Only fencing tokens protect
// the resources in that window; on Resume the holder notices.
func ExampleElection_Pause() {
	f := clock.NewFake(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	election, _ := memlease.NewElection(f, memlease.Options{TTL: time.Second})
	a, _ := election.Member("a", "")
	b, _ := election.Member("b", "")
	ctx := context.Background()

	ta, _ := a.Campaign(ctx)
	election.Pause("a")
	f.Advance(2 * time.Second)
	tb, _ := b.Campaign(ctx)
	select {
	case <-ta.Done():
	default:
		fmt.Printf("b holds token %d while paused a still believes in token %d\n", tb.Token(), ta.Token())
	}
	election.Resume("a")
	<-ta.Done()
	fmt.Println(ta.Err())
	// Output:
	// b holds token 2 while paused a still believes in token 1
	// memlease: member "a" term 1: self-fencing deadline passed while paused: lease: lost
}
