package ha_test

import (
	"context"
	"fmt"
	"time"

	"github.com/hakit/hakit/ha"
	"github.com/hakit/hakit/lease"
	"github.com/hakit/hakit/lease/clock"
	"github.com/hakit/hakit/lease/memlease"
)

// The smallest wiring: an Elector, an ID and the work. The work runs while
// this member is active, with the term's fencing token, and its context
// ends when the term does.
func Example() {
	election, err := memlease.NewElection(clock.Real(), memlease.Options{TTL: 2 * time.Second})
	if err != nil {
		panic(err)
	}
	elector, err := election.Member("a", "")
	if err != nil {
		panic(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	node, err := ha.New(ha.Config{
		ID:      "a",
		Elector: elector,
		Work: func(ctx context.Context, term lease.Term) error {
			t := term.Token()
			fmt.Println("active with token", t)
			stop() // a real work would replicate until ctx ends
			<-ctx.Done()
			return nil
		},
	})
	if err != nil {
		panic(err)
	}
	if err := node.Run(ctx); err != nil {
		panic(err)
	}
	fmt.Println("stopped:", node.Status().Role)
	// Output:
	// active with token 1
	// stopped: stopped
}
