package hatest

import (
	"math/rand"
	"testing"
	"time"
)

// BenchmarkSchedule measures the simulation's speed: one random schedule
// of up to four faults per iteration, about 20 s of virtual time with
// three members. It reports virtual seconds simulated per real second and
// calls recorded per schedule, and the cost of Check on each history.
func BenchmarkSchedule(b *testing.B) {
	rng := rand.New(rand.NewSource(1))
	var virtual time.Duration
	var calls int
	var check time.Duration
	for b.Loop() {
		s := randomSchedule(rng, 3, 4)
		seed := rng.Int63()
		w, err := NewWorld(seed, Options{})
		if err != nil {
			b.Fatal(err)
		}
		d := s.End() + Options{}.Bound() + 2*time.Second
		w.Apply(s)
		w.Run(d)
		h := w.History()
		w.Close()
		virtual += d
		calls += len(h.Ops)
		start := time.Now()
		if err := Check(h); err != nil {
			b.Fatalf("seed %d schedule %v: %v", seed, s, err)
		}
		check += time.Since(start)
	}
	b.ReportMetric(virtual.Seconds()/b.Elapsed().Seconds(), "virtual-s/s")
	b.ReportMetric(float64(calls)/float64(b.N), "calls/op")
	b.ReportMetric(float64(check.Microseconds())/1000/float64(b.N), "check-ms/op")
}
