package storagetest

import (
	"fmt"
	"maps"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/hakit/hakit/fence"
)

// A Call is one Put or Get of a recorded history: what was asked, what
// came back, and when it started and returned, on one clock shared by all
// clients (a monotonic clock; across processes, CLOCK_MONOTONIC).
type Call struct {
	Client     int   // who made the call; one client's calls do not overlap
	Start, End int64 // on the shared clock, Start <= End

	Get   bool        // a Get; otherwise a Put
	Key   string      // the key
	Token fence.Token // a Put's token
	Value string      // a Put's value, or what a Get returned

	// The outcome. A Put is admitted (OK) or refused as stale (Stale); a
	// Get found the key (OK) or not (NotFound). Calls that failed any
	// other way do not belong in a history.
	OK, Stale, NotFound bool
}

// String formats the call as one line of a history, naming the client,
// the operation and its outcome, as CheckHistory prints it on failure.
func (c Call) String() string {
	if c.Get {
		if c.NotFound {
			return fmt.Sprintf("client %d: get(%q) -> not found", c.Client, c.Key)
		}
		return fmt.Sprintf("client %d: get(%q) -> %q", c.Client, c.Key, c.Value)
	}
	res := "ok"
	if c.Stale {
		res = "stale"
	}
	return fmt.Sprintf("client %d: put(token %d, %q, %q) -> %s", c.Client, c.Token, c.Key, c.Value, res)
}

// CheckHistory checks a history of Puts and Gets made concurrently on one
// fenced store, by goroutines, processes or hosts:
//   - tokens admitted never go down in real time: a Put admitted after
//     another admitted Put had returned carries a token at least as large;
//   - the history is linearizable (checked with porcupine) against the
//     sequential specification of a fenced store: a Put whose token is
//     below the highest admitted one is refused and changes nothing, any
//     other Put is admitted; a Get returns the last admitted value.
//
// Put values should be unique, so that a Get names the write it saw. If
// the linearizability check does not finish within a minute it is
// reported with t.Log, not as a failure.
func CheckHistory(t testing.TB, calls []Call) {
	t.Helper()
	var admitted []Call
	for _, c := range calls {
		if !c.Get && c.OK {
			admitted = append(admitted, c)
		}
	}
	sort.Slice(admitted, func(i, j int) bool { return admitted[i].End < admitted[j].End })
	for i, a := range admitted {
		for _, b := range admitted[i+1:] {
			if b.Start > a.End && b.Token < a.Token {
				t.Fatalf("token went down: %v was admitted after %v had returned", b, a)
			}
		}
	}

	ops := make([]porcupine.Operation, len(calls))
	for i, c := range calls {
		ops[i] = porcupine.Operation{ClientId: c.Client, Input: c, Call: c.Start, Output: c, Return: c.End}
	}
	res, info := porcupine.CheckOperationsVerbose(fencedKVModel(), ops, time.Minute)
	switch res {
	case porcupine.Illegal:
		var b strings.Builder
		longest := 0
		for _, part := range info.PartialLinearizationsOperations() {
			for _, lin := range part {
				if len(lin) <= longest {
					continue
				}
				longest = len(lin)
				b.Reset()
				for _, op := range lin {
					fmt.Fprintf(&b, "\n  %v", op.Input.(Call))
				}
			}
		}
		t.Fatalf("history of %d calls is not linearizable against a fenced key-value store; longest linearizable prefix:%s", len(calls), b.String())
	case porcupine.Unknown:
		t.Logf("linearizability check of %d calls did not finish in time; the real-time token check passed", len(calls))
	}
}

// fencedKV is the state of the sequential specification: the highest
// admitted token and the values.
type fencedKV struct {
	high fence.Token
	vals map[string]string
}

func fencedKVModel() porcupine.Model {
	return porcupine.Model{
		Init: func() any { return fencedKV{vals: map[string]string{}} },
		Step: func(state, input, _ any) (bool, any) {
			st, c := state.(fencedKV), input.(Call)
			if c.Get {
				v, ok := st.vals[c.Key]
				if c.NotFound {
					return !ok, st
				}
				return ok && v == c.Value, st
			}
			if c.Token < st.high {
				return c.Stale, st
			}
			if !c.OK {
				return false, st
			}
			next := fencedKV{high: c.Token, vals: maps.Clone(st.vals)}
			next.vals[c.Key] = c.Value
			return true, next
		},
		Equal: func(a, b any) bool {
			x, y := a.(fencedKV), b.(fencedKV)
			return x.high == y.high && maps.Equal(x.vals, y.vals)
		},
		DescribeOperation: func(input, _ any) string { return input.(Call).String() },
	}
}
