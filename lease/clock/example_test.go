package clock_test

import (
	"context"
	"fmt"
	"time"

	"github.com/hakit/hakit/lease/clock"
)

// A test drives code that waits on a timer: it waits until the code has
// armed its timer, then moves the fake time past the deadline.
func ExampleFake() {
	f := clock.NewFake(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	done := make(chan string)
	go func() {
		// The code under test: wait five seconds of its clock.
		t := f.NewTimer(5 * time.Second)
		at := <-t.C()
		done <- at.Format(time.TimeOnly)
	}()

	if err := f.WaitForTimers(context.Background(), 1); err != nil {
		panic(err)
	}
	f.Advance(5 * time.Second)
	fmt.Println("fired at", <-done)
	// Output: fired at 00:00:05
}

// Functions scheduled with AfterFunc run inside Advance, in deadline order,
// so a simulation knows that every reaction has happened when Advance
// returns.
func ExampleAfterFunc() {
	f := clock.NewFake(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	start := f.Now()
	var renew clock.Timer
	renew = clock.AfterFunc(f, 2*time.Second, func() {
		fmt.Println("renew at", f.Now().Sub(start))
		renew.Reset(2 * time.Second)
	})
	clock.AfterFunc(f, 5*time.Second, func() {
		fmt.Println("expire at", f.Now().Sub(start))
		renew.Stop()
	})
	f.Advance(time.Minute)
	// Output:
	// renew at 2s
	// renew at 4s
	// expire at 5s
}
