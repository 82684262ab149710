package hatest

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/lease"
)

func at(ms int) time.Time { return epoch.Add(time.Duration(ms) * time.Millisecond) }

func put(member string, tok int, key, prev, val string, pos int64, s, e int, out Outcome) Op {
	return Op{Resource: "store", Member: member, Kind: OpPut, Key: key, Token: fence.Token(tok), Prev: prev, HasPrev: prev != "-", Value: val, Pos: pos, Start: at(s), End: at(e), Outcome: out}
}

func get(member, key, val string, pos int64, s, e int, out Outcome) Op {
	return Op{Resource: "store", Member: member, Kind: OpGet, Key: key, Value: val, Pos: pos, Start: at(s), End: at(e), Outcome: out}
}

// TestCheckers runs each checker on small hand-made histories, one that
// keeps its guarantee and one that breaks it.
func TestCheckers(t *testing.T) {
	const k = "checkpoint"
	tests := []struct {
		name  string
		check func(*History) error
		h     History
		want  string // "" for no violation, else the guarantee named
	}{
		{"tokens rise", CheckTokens, History{Ops: []Op{
			put("a", 1, k, "-", "v1", 1, 0, 10, OK), put("b", 2, k, "-", "v2", 2, 20, 30, OK)}}, ""},
		{"token falls after a larger one returned", CheckTokens, History{Ops: []Op{
			put("b", 2, k, "-", "v2", 2, 0, 10, OK), put("a", 1, k, "-", "v1", 1, 20, 30, OK)}}, "fencing"},
		{"overlapping writes may land in either order", CheckTokens, History{Ops: []Op{
			put("b", 2, k, "-", "v2", 2, 0, 30, OK), put("a", 1, k, "-", "v1", 1, 10, 40, OK)}}, ""},
		{"resource order falls", CheckTokens, History{Ops: []Op{
			{Resource: "sink", Kind: OpApply, Token: 2, Seq: 1, Outcome: OK, Start: at(0), End: at(50)},
			{Resource: "sink", Kind: OpApply, Token: 1, Seq: 2, Outcome: Unknown, Start: at(1)}}}, "fencing"},

		{"read sees the acknowledged checkpoint", CheckCheckpoints, History{CheckpointKey: k, Ops: []Op{
			{Resource: "sink", Kind: OpApply, Token: 1, Pos: 5, Start: at(0), End: at(5), Outcome: OK},
			put("a", 1, k, "-", "pos=5", 5, 10, 20, OK), get("b", k, "pos=5", 5, 30, 40, OK)}}, ""},
		{"read misses the acknowledged checkpoint", CheckCheckpoints, History{CheckpointKey: k, Ops: []Op{
			{Resource: "sink", Kind: OpApply, Token: 1, Pos: 5, Start: at(0), End: at(5), Outcome: OK},
			put("a", 1, k, "-", "pos=5", 5, 10, 20, OK), get("b", k, "", 0, 30, 40, NotFound)}}, "no lost progress"},
		{"checkpoint ahead of the sink", CheckCheckpoints, History{CheckpointKey: k, Ops: []Op{
			put("a", 1, k, "-", "pos=5", 5, 10, 20, OK),
			{Resource: "sink", Kind: OpApply, Token: 1, Pos: 5, Start: at(0), End: at(25), Outcome: OK}}}, "no lost progress"},

		{"target is a prefix of the source", CheckDelivery, History{Durable: true, Source: []string{"a", "b", "c"}, Target: []string{"a", "b"}}, ""},
		{"target repeats a record", CheckDelivery, History{Durable: true, Source: []string{"a", "b", "c"}, Target: []string{"a", "a"}}, "exactly once"},
		{"plain sink is not checked", CheckDelivery, History{Source: []string{"a"}, Target: []string{"a", "a"}}, ""},

		{"old run stops before the grant", CheckSingleActive, History{
			Grants: []Grant{{Time: at(100), Leader: lease.Leader{ID: "b", Token: 2}}},
			Runs:   []Run{{Member: "a", Token: 1, Interval: Interval{Start: at(0), End: at(150)}, Stopped: at(90)}}}, ""},
		{"old run outlives the grant", CheckSingleActive, History{
			Grants: []Grant{{Time: at(100), Leader: lease.Leader{ID: "b", Token: 2}}},
			Runs:   []Run{{Member: "a", Token: 1, Interval: Interval{Start: at(0), End: at(150)}}}}, "single active"},
		{"old term's run restarted after the grant", CheckSingleActive, History{
			Grants: []Grant{{Time: at(100), Leader: lease.Leader{ID: "b", Token: 2}}},
			Runs: []Run{{Member: "a", Token: 1, Interval: Interval{Start: at(0), End: at(90)}},
				{Member: "a", Token: 1, Interval: Interval{Start: at(120), End: at(130)}}}}, "single active"},
		{"old run of a frozen member stops when it wakes", CheckSingleActive, History{
			Grants: []Grant{{Time: at(100), Leader: lease.Leader{ID: "b", Token: 2}}},
			Paused: map[string][]Interval{"a": {{Start: at(50), End: at(150)}}},
			Runs:   []Run{{Member: "a", Token: 1, Interval: Interval{Start: at(0), End: at(200)}, Stopped: at(150)}}}, ""},
		{"old run of a frozen member runs on after it wakes", CheckSingleActive, History{
			Grants: []Grant{{Time: at(100), Leader: lease.Leader{ID: "b", Token: 2}}},
			Paused: map[string][]Interval{"a": {{Start: at(50), End: at(150)}}},
			Runs:   []Run{{Member: "a", Token: 1, Interval: Interval{Start: at(0), End: at(200)}}}}, "single active"},

		{"active within the bound", CheckLiveness, History{Healed: at(0), Bound: time.Second, End: at(5000),
			Runs: []Run{{Member: "a", Token: 1, Interval: Interval{Start: at(900)}}}}, ""},
		{"active too late", CheckLiveness, History{Healed: at(0), Bound: time.Second, End: at(5000),
			Runs: []Run{{Member: "a", Token: 1, Interval: Interval{Start: at(1100)}}}}, "liveness"},

		{"linearizable with an unknown write", CheckLinearizable, History{Ops: []Op{
			put("a", 1, k, "", "v1", 1, 0, 10, OK),
			{Resource: "store", Member: "a", Kind: OpPut, Key: k, Token: 1, Prev: "v1", HasPrev: true, Value: "v2", Start: at(20), Outcome: Unknown},
			get("b", k, "v2", 2, 30, 40, OK), put("b", 2, k, "v2", "v3", 3, 50, 60, OK),
			put("a", 1, "state", "-", "s1", -1, 70, 80, Stale)}}, ""},
		{"stale write admitted", CheckLinearizable, History{Ops: []Op{
			put("b", 2, k, "-", "v2", 2, 0, 10, OK), put("a", 1, "state", "-", "s1", -1, 20, 30, OK)}}, "linearizability"},
		{"read of a value never written", CheckLinearizable, History{Ops: []Op{
			put("a", 1, k, "-", "v1", 1, 0, 10, OK), get("b", k, "v0", 0, 20, 30, OK)}}, "linearizability"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.check(&tt.h)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("unexpected violation: %v", err)
			case tt.want != "" && !errors.Is(err, ErrViolation):
				t.Fatalf("got %v, want a violation of %q", err, tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Fatalf("violation %q does not name %q", err, tt.want)
			}
		})
	}
}

// logNonLinearizable logs the shortest prefix (by start) of h's store calls
// that CheckLinearizable rejects, ending with the call that breaks it.
func logNonLinearizable(t *testing.T, h *History) {
	t.Helper()
	if CheckLinearizable(h) == nil {
		return
	}
	ops := append([]Op(nil), h.Ops...)
	sort.SliceStable(ops, func(i, j int) bool { return ops[i].Start.Before(ops[j].Start) })
	lo, hi := 1, len(ops)
	for lo < hi {
		mid := (lo + hi) / 2
		hh := *h
		hh.Ops = ops[:mid]
		if CheckLinearizable(&hh) != nil {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	tail := func(s string) string { return fmt.Sprintf("%x", s[max(0, len(s)-8):]) }
	t.Logf("the first %d calls (by start) are not linearizable; the last of them:", lo)
	for _, o := range ops[max(0, lo-15):lo] {
		if o.Resource == "store" {
			t.Logf("  %v prev=…%s value=…%s", o, tail(o.Prev), tail(o.Value))
		}
	}
}
