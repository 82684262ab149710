package pgsink_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/pgsink"
)

// A Sink is normally driven by a replicate.Stream (see the pgcdc package's
// example). Called by hand, ApplyAt applies a batch of pgcdc records only
// if the target stands where the caller expects, under a token no older
// than the last one it admitted. It needs a server, so it is not run here.
func ExampleSink_ApplyAt() {
	sink, err := pgsink.New(pgsink.Config{ConnString: "postgres://apply@target:5432/app?sslmode=verify-full", Stream: "app"})
	if err != nil {
		log.Fatal(err)
	}
	defer sink.Close()
	ctx := context.Background()
	if err := sink.Setup(ctx); err != nil {
		log.Fatal(err)
	}
	at, err := sink.Position(ctx)
	if err != nil {
		log.Fatal(err)
	}
	var batch []replicate.Record // records of replicate/pgcdc
	switch err := sink.ApplyAt(ctx, fence.Token(7), at, batch); {
	case errors.Is(err, fence.ErrStale):
		fmt.Println("a newer term owns the target")
	case errors.Is(err, replicate.ErrPositionMismatch):
		fmt.Println("the target moved: read its position again")
	case errors.Is(err, pgsink.ErrSchema), errors.Is(err, pgsink.ErrDiverged):
		fmt.Println("fix the target:", err)
	case err != nil:
		log.Fatal(err)
	}
	fmt.Println("end-to-end latency:", sink.Stats().Latency)
}

// New checks the whole Config before anything connects, and names every
// field that is wrong.
func ExampleNew() {
	_, err := pgsink.New(pgsink.Config{ConnString: "postgres://apply@target/app", PositionTable: "positions; DROP TABLE x", MaxRowsPerStatement: 5000})
	fmt.Println(errors.Is(err, pgsink.ErrConfig))
	fmt.Println(err)
	// Output:
	// true
	// pgsink: invalid config: Stream: is required
	// pgsink: invalid config: PositionTable: must be a (schema.)identifier of letters, digits and underscores, not "positions; DROP TABLE x"
	// pgsink: invalid config: MaxRowsPerStatement: must be between 1 and 1000, not 5000
}
