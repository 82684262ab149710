package fence

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/anishathalye/porcupine"
	"pgregory.net/rapid"
)

func TestGuardSequential(t *testing.T) {
	type step struct {
		tok   Token
		err   error // nil, ErrStale or ErrNoToken
		high  Token // High() after the step
		above Token // for ErrStale: the token the error must name as High
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"zero token never admitted", []step{{0, ErrNoToken, 0, 0}, {1, nil, 1, 0}, {0, ErrNoToken, 1, 0}}},
		{"increasing", []step{{1, nil, 1, 0}, {2, nil, 2, 0}, {10, nil, 10, 0}}},
		{"equal is admitted", []step{{5, nil, 5, 0}, {5, nil, 5, 0}, {5, nil, 5, 0}}},
		{"lower is stale", []step{{5, nil, 5, 0}, {4, ErrStale, 5, 5}, {1, ErrStale, 5, 5}, {6, nil, 6, 0}, {5, ErrStale, 6, 6}}},
		{"first token may be anything", []step{{1 << 60, nil, 1 << 60, 0}, {1, ErrStale, 1 << 60, 1 << 60}}},
		{"maximum", []step{{^Token(0), nil, ^Token(0), 0}, {^Token(0), nil, ^Token(0), 0}, {^Token(0) - 1, ErrStale, ^Token(0), ^Token(0)}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var g Guard
			for i, s := range tc.steps {
				checkErr := g.Check(s.tok)
				err := g.Admit(s.tok)
				if !errors.Is(err, s.err) || (s.err == nil) != (err == nil) {
					t.Fatalf("step %d: Admit(%d) = %v, want %v", i, s.tok, err, s.err)
				}
				if (checkErr == nil) != (err == nil) || (err != nil && checkErr.Error() != err.Error()) {
					t.Fatalf("step %d: Check(%d) = %v but Admit = %v", i, s.tok, checkErr, err)
				}
				if got := g.High(); got != s.high {
					t.Fatalf("step %d: High() = %d, want %d", i, got, s.high)
				}
				if s.err == ErrStale {
					var se *StaleError
					if !errors.As(err, &se) || se.Token != s.tok || se.High != s.above {
						t.Fatalf("step %d: Admit(%d) error %#v, want a StaleError naming %d and %d", i, s.tok, err, s.tok, s.above)
					}
				}
			}
		})
	}
}

func TestGuardCheckDoesNotAdmit(t *testing.T) {
	var g Guard
	if err := g.Check(7); err != nil {
		t.Fatalf("Check(7) on a fresh guard: %v", err)
	}
	if g.High() != 0 {
		t.Fatalf("Check raised High to %d", g.High())
	}
	if err := g.Admit(3); err != nil {
		t.Fatalf("Admit(3) after Check(7): %v", err)
	}
}

// guardInput and guardOutput describe one call in a recorded history.
type guardInput struct {
	op  string // "admit", "check" or "high"
	tok Token
}

type guardOutput struct {
	err  error // nil, ErrNoToken or a *StaleError
	high Token // for "high": the result; for a stale error: the High it names
}

// guardModel is the sequential specification of a Guard: the state is the
// high-water mark.
var guardModel = porcupine.Model{
	Init: func() any { return Token(0) },
	Step: func(state, input, output any) (bool, any) {
		high, in, out := state.(Token), input.(guardInput), output.(guardOutput)
		if in.op == "high" {
			return out.high == high, high
		}
		var want error
		switch {
		case in.tok == 0:
			want = ErrNoToken
		case in.tok < high:
			// The error must name exactly the mark at that moment.
			var se *StaleError
			return errors.As(out.err, &se) && se.Token == in.tok && se.High == high, high
		}
		if out.err != want {
			return false, high
		}
		if in.op == "admit" && want == nil {
			return true, max(high, in.tok)
		}
		return true, high
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(guardInput), output.(guardOutput)
		if in.op == "high" {
			return fmt.Sprintf("High() = %d", out.high)
		}
		return fmt.Sprintf("%s(%d) = %v", in.op, in.tok, out.err)
	},
}

// TestGuardConcurrentProperty runs random Admit, Check and High calls from
// several goroutines at once and checks the recorded history: admitted
// tokens never go down in real time, and the history is linearizable
// against guardModel.
func TestGuardConcurrentProperty(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		goroutines := rapid.IntRange(2, 4).Draw(rt, "goroutines")
		plans := make([][]guardInput, goroutines)
		for i := range plans {
			plans[i] = rapid.SliceOfN(rapid.Custom(func(rt *rapid.T) guardInput {
				op := rapid.SampledFrom([]string{"admit", "admit", "admit", "check", "high"}).Draw(rt, "op")
				return guardInput{op: op, tok: Token(rapid.Uint64Range(0, 12).Draw(rt, "token"))}
			}), 1, 25).Draw(rt, fmt.Sprintf("plan %d", i))
		}

		var g Guard
		var clock atomic.Int64 // orders call and return events across goroutines
		ops := make([][]porcupine.Operation, goroutines)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i, plan := range plans {
			wg.Go(func() {
				<-start
				for _, in := range plan {
					call := clock.Add(1)
					var out guardOutput
					switch in.op {
					case "admit":
						out.err = g.Admit(in.tok)
					case "check":
						out.err = g.Check(in.tok)
					case "high":
						out.high = g.High()
					}
					ops[i] = append(ops[i], porcupine.Operation{ClientId: i, Input: in, Call: call, Output: out, Return: clock.Add(1)})
				}
			})
		}
		close(start)
		wg.Wait()

		var history, admitted []porcupine.Operation
		for _, o := range ops {
			history = append(history, o...)
			for _, op := range o {
				if op.Input.(guardInput).op == "admit" && op.Output.(guardOutput).err == nil {
					admitted = append(admitted, op)
				}
			}
		}
		for _, a := range admitted {
			for _, b := range admitted {
				if b.Call > a.Return && b.Input.(guardInput).tok < a.Input.(guardInput).tok {
					rt.Fatalf("Admit(%d) returned nil after Admit(%d) had returned nil", b.Input.(guardInput).tok, a.Input.(guardInput).tok)
				}
			}
		}
		if !porcupine.CheckOperations(guardModel, history) {
			rt.Fatalf("history of %d calls is not linearizable against the guard model", len(history))
		}
		want := Token(0)
		for _, a := range admitted {
			want = max(want, a.Input.(guardInput).tok)
		}
		if g.High() != want {
			rt.Fatalf("High() = %d after all calls, want the largest admitted token %d", g.High(), want)
		}
	})
}

// TestGuardModelRejectsBrokenHistory makes sure the linearizability check
// can fail: a history in which a lower token is admitted after a higher
// one returned is not linearizable.
func TestGuardModelRejectsBrokenHistory(t *testing.T) {
	history := []porcupine.Operation{
		{ClientId: 0, Input: guardInput{op: "admit", tok: 5}, Call: 1, Output: guardOutput{}, Return: 2},
		{ClientId: 1, Input: guardInput{op: "admit", tok: 3}, Call: 3, Output: guardOutput{}, Return: 4},
	}
	if porcupine.CheckOperations(guardModel, history) {
		t.Fatal("guard model accepted Admit(3) = nil after Admit(5) = nil")
	}
	history[1].Output = guardOutput{err: Stale(3, 4)}
	if porcupine.CheckOperations(guardModel, history) {
		t.Fatal("guard model accepted a stale error naming the wrong high-water mark")
	}
	history[1].Output = guardOutput{err: Stale(3, 5)}
	if !porcupine.CheckOperations(guardModel, history) {
		t.Fatal("guard model rejected a correct history")
	}
}
