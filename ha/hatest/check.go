package hatest

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/hakit/hakit/fence"
)

// ErrViolation is wrapped by every error a checker returns: the history
// breaks one of hakit's guarantees. The message names the guarantee, the
// members, tokens and times involved.
var ErrViolation = errors.New("hatest: guarantee violated")

func violation(check, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrViolation, check, fmt.Sprintf(format, args...))
}

// Check runs every checker on h and joins their errors; nil means the
// history keeps all five guarantees as far as these checkers can see.
func Check(h *History) error {
	return errors.Join(
		CheckTokens(h),
		CheckSingleActive(h),
		CheckCheckpoints(h),
		CheckDelivery(h),
		CheckLiveness(h),
		CheckLinearizable(h),
	)
}

func isWrite(o Op) bool { return o.Kind == OpPut || o.Kind == OpApply }

// CheckTokens checks fencing on every resource of h: writes are admitted
// under at most one token at a time and the admitted tokens never go
// down. In real time: a write admitted after another admitted write had
// returned carries a token at least as large. Where the history knows the
// resource's own order of admitted writes (Op.Seq), that order is checked
// too, which also catches an overtaking that real time cannot see.
func CheckTokens(h *History) error {
	var errs []error
	for _, res := range resources(h) {
		var ok []Op
		for _, o := range h.Ops {
			if o.Resource == res && isWrite(o) && o.Outcome == OK {
				ok = append(ok, o)
			}
		}
		// Real time: sweep the writes by start, keeping the largest token
		// among the writes that had returned before.
		byEnd := append([]Op(nil), ok...)
		sort.SliceStable(byEnd, func(i, j int) bool { return byEnd[i].End.Before(byEnd[j].End) })
		byStart := append([]Op(nil), ok...)
		sort.SliceStable(byStart, func(i, j int) bool { return byStart[i].Start.Before(byStart[j].Start) })
		var high Op
		k := 0
		for _, b := range byStart {
			for k < len(byEnd) && byEnd[k].End.Before(b.Start) {
				if byEnd[k].Token > high.Token {
					high = byEnd[k]
				}
				k++
			}
			if b.Token < high.Token {
				errs = append(errs, violation("fencing", "%s admitted a write under token %d after a write under token %d had been admitted: {%v} after {%v}", res, b.Token, high.Token, b, high))
				break
			}
		}
		// The resource's own order.
		var seq []Op
		for _, o := range h.Ops {
			if o.Resource == res && isWrite(o) && o.Seq > 0 {
				seq = append(seq, o)
			}
		}
		sort.Slice(seq, func(i, j int) bool { return seq[i].Seq < seq[j].Seq })
		for i := 1; i < len(seq); i++ {
			if seq[i].Token < seq[i-1].Token {
				errs = append(errs, violation("fencing", "%s admitted token %d after token %d: {%v} after {%v}", res, seq[i].Token, seq[i-1].Token, seq[i], seq[i-1]))
				break
			}
		}
	}
	return errors.Join(errs...)
}

func resources(h *History) []string {
	seen := map[string]bool{}
	var out []string
	for _, o := range h.Ops {
		if !seen[o.Resource] {
			seen[o.Resource] = true
			out = append(out, o.Resource)
		}
	}
	sort.Strings(out)
	return out
}

// CheckSingleActive checks guarantee 1: once the lease is granted to a term,
// no run of an older term goes on or starts, unless its member's process was
// frozen at that moment and the run ended no later than the process woke
// (the window fencing tokens exist for: a frozen member cannot stop its
// work, and nothing it writes after waking counts). A run that outlives
// the grant of a newer term on a live member means that member's Done fired
// after its lease could expire elsewhere.
func CheckSingleActive(h *History) error {
	for _, g := range h.Grants {
		if g.Leader.IsZero() {
			continue
		}
		for _, r := range h.Runs {
			end := r.activeEnd()
			if r.Token >= g.Leader.Token || (!end.IsZero() && !end.After(g.Time)) {
				continue
			}
			if p, ok := pausedAt(h, r.Member, g.Time); ok && (p.End.IsZero() || (!end.IsZero() && !end.After(p.End))) {
				continue
			}
			until := "the end of the history"
			if !end.IsZero() {
				until = end.Format("15:04:05.000")
			}
			return violation("single active", "member %s's work under token %d ran until %s, past the grant of token %d to %s at %s",
				r.Member, r.Token, until, g.Leader.Token, g.Leader.ID, g.Time.Format("15:04:05.000"))
		}
	}
	return nil
}

// pausedAt returns the longest pause of member that contains t.
func pausedAt(h *History, member string, t time.Time) (Interval, bool) {
	var best Interval
	found := false
	for _, p := range h.Paused[member] {
		if !p.contains(t) {
			continue
		}
		if !found || p.End.IsZero() || (!best.End.IsZero() && p.End.After(best.End)) {
			best = p
		}
		found = true
	}
	return best, found
}

// CheckCheckpoints checks guarantee 3 on the checkpoint key: no
// acknowledged checkpoint is lost or goes backwards (every read that
// starts after a checkpoint write was acknowledged returns that position
// or a later one), and no checkpoint runs ahead of what was delivered (a
// checkpoint write names a position that, before the write started, the
// sink had acknowledged or reported, or an earlier checkpoint held).
func CheckCheckpoints(h *History) error {
	var acked, reads, support []Op
	for i, o := range h.Ops {
		o.Seq = uint64(i) // the checker's own: which op this is
		if o.Kind == OpGet && o.Outcome == NotFound {
			o.Outcome, o.Pos = OK, 0 // no checkpoint reads as position 0
		}
		if o.Outcome != OK || o.Pos < 0 {
			continue
		}
		switch {
		case o.Resource == "store" && o.Key == h.CheckpointKey && o.Kind == OpPut:
			acked = append(acked, o)
			support = append(support, o)
		case o.Resource == "store" && o.Key == h.CheckpointKey && o.Kind == OpGet:
			reads = append(reads, o)
			support = append(support, o)
		case o.Resource == "sink" && (o.Kind == OpApply || o.Kind == OpPosition):
			support = append(support, o)
		}
	}
	for _, r := range reads {
		for _, p := range acked {
			if p.End.Before(r.Start) && r.Pos < p.Pos {
				return violation("no lost progress", "checkpoint %d acknowledged at %s to %s (token %d) was lost: a read by %s at %s returned %d",
					p.Pos, p.End.Format("15:04:05.000"), p.Member, p.Token, r.Member, r.Start.Format("15:04:05.000"), r.Pos)
			}
		}
	}
	for _, p := range acked {
		if p.Pos == 0 {
			continue
		}
		covered := false
		for _, s := range support {
			if s.Seq == p.Seq || s.End.After(p.Start) || s.Pos < p.Pos {
				continue
			}
			covered = true
			break
		}
		if !covered {
			return violation("no lost progress", "checkpoint %d was written by %s under token %d at %s before the sink had acknowledged position %d",
				p.Pos, p.Member, p.Token, p.Start.Format("15:04:05.000"), p.Pos)
		}
	}
	return nil
}

// CheckDelivery checks guarantee 4 for a durable sink: the sink's records
// are exactly the source's first records, in order, each once.
func CheckDelivery(h *History) error {
	if !h.Durable {
		return nil
	}
	for i, got := range h.Target {
		if i >= len(h.Source) {
			return violation("exactly once", "the sink holds %d records, the source only %d", len(h.Target), len(h.Source))
		}
		if got != h.Source[i] {
			return violation("exactly once", "sink record %d is %q, source record %d is %q (a duplicate or a gap)", i+1, got, i+1, h.Source[i])
		}
	}
	return nil
}

// CheckLiveness checks guarantee 5: some member's work was running within
// h.Bound after h.Healed, and was still running at that deadline or at
// the end of the run. A zero Bound or Healed skips the check.
func CheckLiveness(h *History) error {
	if h.Bound <= 0 || h.Healed.IsZero() {
		return nil
	}
	deadline := h.Healed.Add(h.Bound)
	if h.End.Before(deadline) {
		deadline = h.End
	}
	for _, r := range h.Runs {
		if !r.Start.After(deadline) && (r.End.IsZero() || !r.End.Before(deadline)) {
			return nil
		}
	}
	return violation("liveness", "no member was active at %s, %v after the last fault healed at %s",
		deadline.Format("15:04:05.000"), deadline.Sub(h.Healed), h.Healed.Format("15:04:05.000"))
}

// Recovery returns how long after h.Healed some member's work was first
// running (0 if one was running at that moment), and false if none ran
// after it within the history.
func Recovery(h *History) (time.Duration, bool) {
	var best time.Duration
	found := false
	for _, r := range h.Runs {
		if !r.End.IsZero() && !r.End.After(h.Healed) {
			continue
		}
		d := max(r.Start.Sub(h.Healed), 0)
		if !found || d < best {
			best, found = d, true
		}
	}
	return best, found
}

// LinearizeTimeout bounds the porcupine search of CheckLinearizable; a
// search that runs out is not reported as a violation.
const LinearizeTimeout = 30 * time.Second

// CheckLinearizable checks, with porcupine, that the reads and writes of
// the store are linearizable against the sequential specification of a
// fenced store: a write with a token below the highest admitted one is
// refused as stale and changes nothing; a compare-and-swap that finds
// another value is refused as a conflict and changes nothing (not even the
// fence); any other write is admitted, stores its value and raises the
// fence; a read returns the key's last admitted value. A call with no
// answer (Unknown) may or may not have taken effect; one that Failed took
// none. Every write to the store must be in the history, since each one
// moves the store-wide fence.
func CheckLinearizable(h *History) error {
	var ops []porcupine.Operation
	for _, o := range h.Ops {
		if o.Resource != "store" {
			continue
		}
		if o.Kind == OpGet && o.Outcome != OK && o.Outcome != NotFound {
			continue // a read with no answer constrains nothing
		}
		ret := int64(1) << 62
		if o.Outcome != Unknown {
			ret = o.End.UnixNano()
		}
		ops = append(ops, porcupine.Operation{Input: o, Output: o, Call: o.Start.UnixNano(), Return: ret})
	}
	res, _ := porcupine.CheckOperationsVerbose(storeModel.ToModel(), ops, LinearizeTimeout)
	if res == porcupine.Illegal {
		return violation("linearizability", "the %d calls on the store are not linearizable against a fenced store", len(ops))
	}
	return nil
}

// fencedState is the state of the fenced store of CheckLinearizable: the
// values as a canonical string (so that states compare with ==) and the
// highest admitted token. The string holds one quoted key and quoted value
// per line, sorted by key; quoting keeps binary values off the separators.
type fencedState struct {
	kv   string
	high fence.Token
}

func (s fencedState) pairs() map[string]string {
	m := map[string]string{}
	for line := range strings.SplitSeq(s.kv, "\n") {
		if line == "" {
			continue
		}
		qk, qv, _ := strings.Cut(line, " ")
		k, err1 := strconv.Unquote(qk)
		v, err2 := strconv.Unquote(qv)
		if err1 == nil && err2 == nil {
			m[k] = v
		}
	}
	return m
}

func (s fencedState) get(key string) (string, bool) {
	v, ok := s.pairs()[key]
	return v, ok
}

func (s fencedState) put(key, val string, t fence.Token) fencedState {
	m := s.pairs()
	m[key] = val
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(strconv.Quote(k) + " " + strconv.Quote(m[k]) + "\n")
	}
	return fencedState{kv: b.String(), high: max(s.high, t)}
}

var storeModel = porcupine.NondeterministicModel{
	Init: func() []any { return []any{fencedState{}} },
	Step: func(state, input, _ any) []any {
		s, o := state.(fencedState), input.(Op)
		val, present := s.get(o.Key)
		if o.Kind == OpGet {
			if (o.Outcome == OK && present && val == o.Value) || (o.Outcome == NotFound && !present) {
				return []any{s}
			}
			return nil
		}
		admit := o.Token >= s.high
		match := !o.HasPrev || (o.Prev == "" && !present) || (present && val == o.Prev)
		switch o.Outcome {
		case OK:
			if admit && match {
				return []any{s.put(o.Key, o.Value, o.Token)}
			}
		case Stale:
			if !admit {
				return []any{s}
			}
		case Conflict:
			if admit && !match {
				return []any{s}
			}
		case Unknown:
			if admit && match {
				return []any{s.put(o.Key, o.Value, o.Token), s}
			}
			return []any{s}
		case Failed:
			return []any{s}
		}
		return nil
	},
	DescribeOperation: func(input, _ any) string { return input.(Op).String() },
}
