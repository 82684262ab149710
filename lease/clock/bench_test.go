package clock_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/hakit/hakit/lease/clock"
)

// BenchmarkFakeFire measures stepping a Fake from deadline to deadline
// with n self-rearming AfterFunc timers armed, as a simulation does; ns/fire
// is the cost of one timer firing (several share a deadline).
func BenchmarkFakeFire(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("timers=%d", n), func(b *testing.B) {
			f := clock.NewFake(epoch)
			fires := 0
			for i := range n {
				period := time.Duration(1+i%97) * time.Millisecond
				var t clock.Timer
				t = clock.AfterFunc(f, period, func() { fires++; t.Reset(period) })
			}
			b.ResetTimer()
			for range b.N {
				next, _ := f.NextDeadline()
				f.Set(next)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(fires), "ns/fire")
		})
	}
}

// BenchmarkTimerReset compares Reset and Stop of a Fake timer with the
// same on a real one.
func BenchmarkTimerReset(b *testing.B) {
	for _, c := range []struct {
		name string
		clk  clock.Clock
	}{{"real", clock.Real()}, {"fake", clock.NewFake(epoch)}} {
		b.Run(c.name, func(b *testing.B) {
			t := c.clk.NewTimer(time.Hour)
			for range b.N {
				t.Reset(time.Hour)
			}
			t.Stop()
		})
	}
}
