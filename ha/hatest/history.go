package hatest

import (
	"fmt"
	"time"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/lease"
)

// OpKind says what an Op did.
type OpKind int

// The kinds of Op.
const (
	OpGet      OpKind = iota // read a key of the store
	OpPut                    // write a key of the store (a compare-and-swap when Prev is set)
	OpApply                  // apply a batch of records to the sink
	OpPosition               // read the sink's position
)

var opNames = [...]string{"get", "put", "apply", "position"}

// String returns the kind's name.
func (k OpKind) String() string {
	if k >= 0 && int(k) < len(opNames) {
		return opNames[k]
	}
	return fmt.Sprintf("op(%d)", int(k))
}

// Outcome is how an Op ended, as its caller saw it.
type Outcome int

// The outcomes.
const (
	OK       Outcome = iota // the call succeeded
	Stale                   // refused: the token was older than one the resource admitted
	Conflict                // a compare-and-swap found another value
	NotFound                // a Get found no value
	Unknown                 // no answer: the call may or may not have taken effect
	Failed                  // refused for another reason; it took no effect
)

var outcomeNames = [...]string{"ok", "stale", "conflict", "not-found", "unknown", "failed"}

// String returns the outcome's name.
func (o Outcome) String() string {
	if o >= 0 && int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return fmt.Sprintf("outcome(%d)", int(o))
}

// Op is one call a member made on a shared resource: the fenced store
// ("store") or the sink ("sink"). Start and End are when the caller sent
// it and saw its answer, on one clock shared by all members (world time
// in a World; a monotonic clock for a history recorded elsewhere). An Op
// with Outcome Unknown has no End (End is the zero Time).
//
// Values must be unique among the Puts of one key, so that a Get names
// the write it saw; Pos is the replication position a value stands for
// (a checkpoint's, a batch's end, a sink's position), or -1 when it has
// none.
type Op struct {
	Resource string
	Member   string
	Kind     OpKind
	Key      string
	Token    fence.Token
	// Prev is the value a compare-and-swap expected ("" with HasPrev: the
	// key absent); without HasPrev a Put is unconditional.
	Prev    string
	HasPrev bool
	Value   string // a Put's value or what a Get returned
	Pos     int64
	From    int64 // an Apply's first position (records From+1..Pos)
	Start   time.Time
	End     time.Time
	Outcome Outcome
	// Applied is when the resource admitted the call's write (zero when
	// unknown, when it was refused, or for reads), and Seq its place in
	// the resource's order of admitted writes (from 1; 0 when unknown).
	// Only a simulation knows them; a checker uses them where set.
	Applied time.Time
	Seq     uint64
}

// String formats the op for a failure message: member, resource, kind,
// key, token, position, times and outcome.
func (o Op) String() string {
	end := "?"
	if !o.End.IsZero() {
		end = o.End.Format("15:04:05.000")
	}
	return fmt.Sprintf("%s %s %s %q token=%d pos=%d [%s,%s] %s", o.Member, o.Resource, o.Kind, o.Key, o.Token, o.Pos,
		o.Start.Format("15:04:05.000"), end, o.Outcome)
}

// Interval is one span of world time; a zero End means "until the end of
// the run".
type Interval struct {
	Start, End time.Time
}

// contains reports whether t lies in [Start, End).
func (i Interval) contains(t time.Time) bool {
	return !t.Before(i.Start) && (i.End.IsZero() || t.Before(i.End))
}

// Run is one span during which a member ran its work under a token: from
// the Node's StartWork to the work's exit (or the member's crash).
type Run struct {
	Member string
	Token  fence.Token
	Interval
	// From is the position the run resumed from, -1 if it never got that
	// far.
	From int64
	// Stopped is when the member told the run to stop (its context
	// ended); zero if the run exited by itself or the member crashed. A
	// run may still finish a call and commit a final checkpoint after it,
	// fenced like every other write; for guarantee 1 the run counts as
	// active until Stopped or End, whichever is first.
	Stopped time.Time
}

// activeEnd is when the run stopped counting as active; zero if it never
// stopped within the history.
func (r Run) activeEnd() time.Time {
	if !r.Stopped.IsZero() && (r.End.IsZero() || r.Stopped.Before(r.End)) {
		return r.Stopped
	}
	return r.End
}

// Grant is a change of the lease holder as the election saw it; the zero
// Leader means the lease became free.
type Grant struct {
	Time   time.Time
	Leader lease.Leader
}

// History is what a run recorded: every call on the shared resources,
// every lease change, every work run, the faults, and the source and the
// sink's final contents. Checkers read it; a user may build one from a
// run of their own.
type History struct {
	Ops    []Op
	Grants []Grant
	Runs   []Run
	// Paused holds, per member, the spans during which the member's process
	// was frozen (a crashed member counts as paused until its restart).
	Paused map[string][]Interval
	// Faults lists the faults injected, in order, as text.
	Faults []string

	// Source and Target are the records of the source and the sink at the
	// end of the run, as their data; a checker compares them when Durable.
	Source, Target []string
	// Durable says the sink kept its own position (a DurableSink), so the
	// target must equal a prefix of the source exactly.
	Durable bool

	// CheckpointKey is the store key holding the checkpoint.
	CheckpointKey string

	// Healed is when the last fault was healed; Bound is the time within
	// which a member must be active after it. A zero Bound disables the
	// liveness check.
	Healed time.Time
	Bound  time.Duration
	// End is when the run stopped.
	End time.Time
}
