package replicate

import (
	"testing"
	"time"
)

func TestPolicyDue(t *testing.T) {
	cases := []struct {
		p       policy
		records int
		elapsed time.Duration
		want    bool
	}{
		{policy{every: 10, interval: time.Second}, 0, time.Hour, false}, // nothing new: never
		{policy{every: 10, interval: time.Second}, 9, 999 * time.Millisecond, false},
		{policy{every: 10, interval: time.Second}, 10, 0, true},
		{policy{every: 10, interval: time.Second}, 1, time.Second, true},
		{policy{every: 0, interval: time.Second}, 1 << 30, time.Millisecond, false}, // count trigger off
		{policy{every: 10, interval: 0}, 9, time.Hour, false},                       // time trigger off
		{policy{}, 1 << 30, time.Hour, false},                                       // only at stop
	}
	for i, tc := range cases {
		if got := tc.p.due(tc.records, tc.elapsed); got != tc.want {
			t.Errorf("case %d: %+v.due(%d, %v) = %v, want %v", i, tc.p, tc.records, tc.elapsed, got, tc.want)
		}
	}
}
