package hatest

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// Regression schedules: one per hole the simulation found. Each runs the
// schedule that exposed it twice: with the hole planted back (the checkers
// must report it) and as the World runs by default (they must not).

type regression struct {
	name   string
	seed   int64
	opts   Options
	sched  Schedule
	plant  func(*Options)
	report string // the guarantee the planted run must break
}

var regressions = []regression{
	{
		// A holder frozen past its lease wakes with a batch due: the batch
		// goes out under the old token before the member notices its term
		// ended. The successor had read the sink's position but not yet
		// applied anything, so the sink still admitted the old token: the
		// successor applied those records again. replicate.Stream reads
		// DurableSink.Position before anything fences the sink.
		name:   "frozen holder's batch lands between the successor's position read and its first batch",
		seed:   -1,
		sched:  Schedule{{At: 224 * time.Millisecond, For: 1830 * time.Millisecond, Kind: FaultPause, Member: 0}},
		plant:  func(o *Options) { o.positionBeforeFence, o.unconditionalApply = true, true },
		report: "exactly once",
	},
	{
		// A batch delayed past OpTimeout fails the run; the Node restarts
		// the work in the same term, the new run reads the sink's position
		// before the delayed batch lands, and applies the same records
		// again. The token cannot tell two runs of one term apart; only a
		// sink that applies a batch at its own position can.
		name:   "a timed-out batch of an earlier run of the same term lands after the restart",
		seed:   0,
		sched:  Schedule{{At: 131 * time.Millisecond, For: 25 * time.Millisecond, Kind: FaultSlow}},
		plant:  func(o *Options) { o.unconditionalApply = true },
		report: "exactly once",
	},
	{
		// Found as a false report of the single-active checker: a frozen
		// holder that wakes finishes its call in flight and commits a
		// final checkpoint (fenced) after its term ended. The run counts
		// as active only until it is told to stop (Run.Stopped).
		name:  "final checkpoint of a woken holder is not activity",
		seed:  0,
		sched: Schedule{{At: 20 * time.Millisecond, For: 4 * time.Second, Kind: FaultPause, Member: 0}},
	},
	{
		// Found as a false report of the drift model: a member with a slow
		// clock that was cut off notices its self-fenced term late, but
		// memlease releases that term's lease the moment the member heals.
		// The member now learns of it at the heal.
		name:  "slow-clock member healed before it noticed its term ended",
		seed:  2,
		opts:  Options{Lease: memleaseOptions(3 * time.Second), HoldOff: 100 * time.Millisecond, MaxDelay: time.Millisecond, MaxDrift: 0.01, Batch: 1, CheckpointEvery: 1},
		sched: Schedule{{At: 4846 * time.Millisecond, For: 1854 * time.Millisecond, Kind: FaultIsolate, Member: 0}},
	},
	{
		// Found as a false liveness report: a switchover just before the
		// liveness deadline left no member active at the deadline. A
		// switchover now counts as a fault that heals at once.
		name:  "switchover just before the liveness deadline",
		seed:  0,
		opts:  Options{Lease: memleaseOptions(time.Second), HoldOff: 600 * time.Millisecond, MaxDelay: time.Millisecond, MaxDrift: 0.05, Batch: 1, CheckpointEvery: 1},
		sched: Schedule{{At: 137 * time.Millisecond, For: 17 * time.Millisecond, Kind: FaultIsolate, Member: 0}, {At: 7422 * time.Millisecond, Kind: FaultSwitchover, Member: 1}},
	},
}

func TestRegressions(t *testing.T) {
	for _, r := range regressions {
		t.Run(r.name, func(t *testing.T) {
			h, _ := runSchedule(t, r.seed, r.sched, r.opts)
			if err := Check(h); err != nil {
				t.Fatalf("seed %d schedule %v: %v", r.seed, r.sched, err)
			}
			if r.plant == nil {
				return
			}
			o := r.opts
			r.plant(&o)
			h, _ = runSchedule(t, r.seed, r.sched, o)
			err := Check(h)
			if !errors.Is(err, ErrViolation) || !strings.Contains(err.Error(), r.report) {
				t.Fatalf("with the hole planted back: Check = %v, want a violation of %q", err, r.report)
			}
		})
	}
}
