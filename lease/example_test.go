package lease_test

import (
	"context"
	"fmt"
	"time"

	"github.com/hakit/hakit/lease"
	"github.com/hakit/hakit/lease/clock"
	"github.com/hakit/hakit/lease/memlease"
)

// A member campaigns, works while its term lasts, and resigns to hand the
// lease to the next member at once. The work's context is tied to Done, so
// the work stops when the term ends for any reason; every write it makes
// carries Token.
func Example() {
	election, err := memlease.NewElection(clock.Real(), memlease.Options{})
	if err != nil {
		panic(err)
	}
	a, _ := election.Member("a", "10.0.0.1:7000")
	b, _ := election.Member("b", "10.0.0.2:7000")
	defer a.Close()
	defer b.Close()
	ctx := context.Background()

	term, err := a.Campaign(ctx)
	if err != nil {
		panic(err)
	}
	fmt.Println("a leads with token", term.Token())

	work, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		<-term.Done() // the term ended: stop acting as leader
		stop()
	}()

	next := make(chan lease.Term)
	go func() {
		t, err := b.Campaign(ctx)
		if err != nil {
			panic(err)
		}
		next <- t
	}()

	if err := term.Resign(ctx); err != nil { // switchover
		panic(err)
	}
	<-work.Done()
	fmt.Println("a stopped:", term.Err())
	t := <-next
	fmt.Println("b leads with token", t.Token())
	t.Resign(ctx)
	// Output:
	// a leads with token 1
	// a stopped: memlease: member "a" term 1: lease: resigned
	// b leads with token 2
}

// Observe reports every change of leader in order, with the zero Leader
// for "no leader".
func ExampleElector_Observe() {
	f := clock.NewFake(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	election, _ := memlease.NewElection(f, memlease.Options{})
	a, _ := election.Member("a", "10.0.0.1:7000")
	watcher, _ := election.Member("w", "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	changes := watcher.Observe(ctx)
	show := func() {
		if l := <-changes; l.IsZero() {
			fmt.Println("no leader")
		} else {
			fmt.Printf("leader %s at %s, token %d\n", l.ID, l.Addr, l.Token)
		}
	}
	show()
	term, _ := a.Campaign(ctx)
	show()
	term.Resign(ctx)
	show()
	// Output:
	// no leader
	// leader a at 10.0.0.1:7000, token 1
	// no leader
}

// Leader answers "who leads now?", with ErrNoLeader when nobody does.
func ExampleElector_Leader() {
	election, _ := memlease.NewElection(clock.Real(), memlease.Options{})
	a, _ := election.Member("a", "10.0.0.1:7000")
	defer a.Close()
	ctx := context.Background()

	if _, err := a.Leader(ctx); err != nil {
		fmt.Println(err)
	}
	term, _ := a.Campaign(ctx)
	l, _ := a.Leader(ctx)
	fmt.Println(l.ID, l.Addr, l.Token == term.Token())
	term.Resign(ctx)
	// Output:
	// memlease: leader for member "a": lease: no leader
	// a 10.0.0.1:7000 true
}

// A holder answers "I am primary" only after checking its term at the
// moment it answers. Here the member is frozen (memlease's Pause stands
// for SIGSTOP or a long GC pause) past its deadline: its Done cannot
// close while it is frozen, but Valid already says no.
func ExampleValid() {
	clk := clock.NewFake(time.Unix(0, 0))
	election, err := memlease.NewElection(clk, memlease.Options{TTL: 5 * time.Second})
	if err != nil {
		panic(err)
	}
	a, _ := election.Member("a", "")
	defer a.Close()
	term, err := a.Campaign(context.Background())
	if err != nil {
		panic(err)
	}
	fmt.Println("primary now:", lease.Valid(term, clk.Now()))

	election.Pause("a")
	clk.Advance(10 * time.Second)
	select {
	case <-term.Done():
		fmt.Println("Done closed")
	default:
		fmt.Println("Done still open")
	}
	fmt.Println("primary after the freeze:", lease.Valid(term, clk.Now()))
	// Output:
	// primary now: true
	// Done still open
	// primary after the freeze: false
}
