package hatest

import (
	"fmt"
	"testing"
)

// FuzzValuePos: the checkpoint values a World reads back from its store
// are parsed by valuePos, which must never panic, must return -1 for
// anything it did not write, and must read back what it wrote.
func FuzzValuePos(f *testing.F) {
	f.Add("pos=12 token=3 member=m0 value=7", int64(5))
	f.Add("pos=", int64(0))
	f.Add("pos=-4 x", int64(9))
	f.Add("state token=1", int64(1))
	f.Add("", int64(0))
	f.Fuzz(func(t *testing.T, v string, n int64) {
		if p := valuePos(v); p < -1 {
			t.Fatalf("valuePos(%q) = %d, want a position or -1", v, p)
		}
		if n < 0 {
			n = -n
		}
		if n < 0 {
			return // math.MinInt64
		}
		w := fmt.Sprintf("pos=%d token=1 member=m0 value=1", n)
		if got := valuePos(w); got != n {
			t.Fatalf("valuePos(%q) = %d, want %d", w, got, n)
		}
	})
}
