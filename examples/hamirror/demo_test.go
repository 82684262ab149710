package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hakit/hakit/fence"
)

// TestDemo runs the main job, shortened: three members on embedded Raft,
// a kill -9 of the active member, a restart and a switchover to it, a
// pause of the active member whose held write must be refused as stale,
// and the check that the target equals the source.
func TestDemo(t *testing.T) {
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	res, err := RunDemo(ctx, DemoOptions{Rate: 2000, Steady: 500 * time.Millisecond, Dir: t.TempDir(), Out: &out})
	if res != nil {
		printSummary(&out, res)
	}
	t.Logf("demo output:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	if !res.Equal || res.Lost != 0 || res.Duplicated != 0 {
		t.Fatalf("target != source: %+v", res)
	}
	if res.Source == 0 || res.Source != res.Target {
		t.Fatalf("records: source %d, target %d", res.Source, res.Target)
	}
	if len(res.Terms) < 3 {
		t.Fatalf("terms %v: want the first, the failover's and the switchover's", res.Terms)
	}
	for i := 1; i < len(res.Terms); i++ {
		if res.Terms[i].Token <= res.Terms[i-1].Token {
			t.Errorf("terms %v: tokens do not increase", res.Terms)
		}
	}
	if res.Killed == "" || res.SwitchTo == "" || res.Paused == "" {
		t.Errorf("an act is missing: killed %q, switched to %q, paused %q", res.Killed, res.SwitchTo, res.Paused)
	}
	if !errors.Is(res.Fenced.Err, fence.ErrStale) || res.Fenced.ID != res.Paused {
		t.Errorf("the paused member's held write: %+v, want refused as stale", res.Fenced)
	}
	if res.Failover <= 0 || res.Switchover <= 0 || res.PauseFailover <= 0 {
		t.Errorf("timings not measured: failover %s, switchover %s, pause %s", res.Failover, res.Switchover, res.PauseFailover)
	}
	if s := out.String(); !strings.Contains(s, "lost         0") || !strings.Contains(s, "duplicated   0") || !strings.Contains(s, "OK: target == source") {
		t.Errorf("summary lacks the verdict lines")
	}
}

func TestCompareRecords(t *testing.T) {
	r := func(s ...string) [][]byte {
		var out [][]byte
		for _, x := range s {
			out = append(out, []byte(x))
		}
		return out
	}
	for _, tc := range []struct {
		name      string
		src, dst  [][]byte
		lost, dup int
		equal     bool
	}{
		{"equal", r("1", "2", "3"), r("1", "2", "3"), 0, 0, true},
		{"lost", r("1", "2", "3"), r("1", "3"), 1, 0, false},
		{"duplicated", r("1", "2", "3"), r("1", "2", "2", "3"), 0, 1, false},
		{"reordered", r("1", "2", "3"), r("1", "3", "2"), 0, 0, false},
		{"foreign", r("1", "2"), r("1", "2", "x"), 0, 0, false},
		{"empty", nil, nil, 0, 0, true},
	} {
		lost, dup, equal := compareRecords(tc.src, tc.dst)
		if lost != tc.lost || dup != tc.dup || equal != tc.equal {
			t.Errorf("%s: lost %d, duplicated %d, equal %v; want %d, %d, %v", tc.name, lost, dup, equal, tc.lost, tc.dup, tc.equal)
		}
	}
}
