package memrepl_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/memrepl"
)

// A memory Source read through a Cursor and applied to a fencing,
// durable memory sink.
func ExampleSource() {
	ctx := context.Background()
	src := &memrepl.Source{}
	src.Append([]byte("one"), []byte("two"))

	cur, _ := src.Open(ctx, replicate.Checkpoint{})
	defer cur.Close()
	recs, _ := cur.Next(ctx, 10)

	sink := &memrepl.DurableSink{}
	if err := sink.Apply(ctx, 2, recs); err != nil {
		fmt.Println(err)
	}
	pos, _ := sink.Position(ctx)
	n, _ := memrepl.DecodePos(pos)
	fmt.Println(len(recs), "records read; sink after record", n)

	// A deposed writer's older token is refused.
	err := sink.Apply(ctx, 1, recs)
	fmt.Println("stale:", errors.Is(err, fence.ErrStale))
	// Output:
	// 2 records read; sink after record 2
	// stale: true
}
