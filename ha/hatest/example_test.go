package hatest_test

import (
	"fmt"
	"time"

	"github.com/hakit/hakit/ha/hatest"
)

// A three-member cluster: the active member is frozen for longer than its
// lease, another takes over, and the frozen one wakes up. Every guarantee
// still holds.
func Example() {
	w, err := hatest.NewWorld(42, hatest.Options{})
	if err != nil {
		panic(err)
	}
	defer w.Close()

	w.Run(time.Second)
	first := w.Active()
	fmt.Println("active:", first)

	w.Pause(first)
	w.Run(5 * time.Second)
	fmt.Println("active while", first, "is frozen:", w.Active())
	w.Resume(first)
	w.Run(5 * time.Second)

	if err := hatest.Check(w.History()); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("guarantees hold")
	// Output:
	// active: m0
	// active while m0 is frozen: m1
	// guarantees hold
}

// A Schedule of faults, applied to a World and checked. In a property
// test, ScheduleOf draws schedules with rapid instead:
//
//	rapid.Check(t, func(t *rapid.T) {
//		seed := rapid.Int64().Draw(t, "seed")
//		s := hatest.ScheduleOf(3, 6, 8*time.Second, 4*time.Second).Draw(t, "schedule")
//		...
//	})
func ExampleSchedule() {
	s := hatest.Schedule{
		{At: 500 * time.Millisecond, For: 3 * time.Second, Kind: hatest.FaultIsolate, Member: 0},
		{At: time.Second, For: 2 * time.Second, Kind: hatest.FaultCut, Member: 1, Resource: "store", Dir: hatest.FromResource},
	}
	w, err := hatest.NewWorld(7, hatest.Options{})
	if err != nil {
		panic(err)
	}
	defer w.Close()
	w.Apply(s)
	w.Run(s.End() + hatest.Options{}.Bound())
	fmt.Println(s, hatest.Check(w.History()))
	// Output:
	// [500ms+3s isolate m0; 1s+2s cut m1 <- store] <nil>
}
