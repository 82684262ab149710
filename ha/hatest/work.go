package hatest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/ha/internal/core"
	"github.com/hakit/hakit/lease/clock"
	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/memrepl"
	"github.com/hakit/hakit/storage"
)

// ErrOpTimeout is the error of a work run whose call on a resource got no
// answer within Options.OpTimeout.
var ErrOpTimeout = errors.New("hatest: call timed out")

// work is one run of a member's simulated replication work. It follows the
// protocol of replicate.Stream with a DurableSink, one call at a time:
// read the checkpoint, fence the sink (an empty batch under the run's
// token), read the sink's position, claim the checkpoint under the run's
// token (a compare-and-swap of the newer of the two), then
// apply batches of the source and checkpoint every CheckpointEvery batches
// with a compare-and-swap on the version last read or written. When
// stopped it commits a final checkpoint of the acknowledged progress.
//
// Like replicate.Stream, it fences the sink before reading its position,
// and applies a batch only if it starts at the sink's position (a
// conditional apply, replicate.ConditionalSink), so a call of an earlier
// run that lands late is refused instead of applied twice. Both steps
// closed holes this simulation found (see the regression tests).
type work struct {
	m     *member
	token fence.Token
	run   int

	phase   int   // 0 read checkpoint, 1 read position, 2 claim, 3 stream
	pos     int64 // records acknowledged by the sink
	cpPos   int64 // position of the checkpoint last read or written
	cpVal   string
	cpVer   storage.Version
	batches int // batches applied since the last checkpoint

	busy     bool // a call is in flight
	stopping bool
	exited   bool
	ticker   clock.Timer
	runIdx   int // index of this run in the history's Runs
}

func (k *work) start() {
	k.m.w.hist.Runs = append(k.m.w.hist.Runs, Run{Member: k.m.id, Token: k.token, Interval: Interval{Start: k.m.w.clk.Now()}, From: -1})
	k.runIdx = len(k.m.w.hist.Runs) - 1
	k.readCheckpoint()
}

// exit ends the run once; err nil means it stopped as asked.
func (k *work) exit(err error) {
	if k.exited {
		return
	}
	k.exited = true
	if k.ticker != nil {
		k.ticker.Stop()
	}
	w := k.m.w
	if r := &w.hist.Runs[k.runIdx]; r.End.IsZero() {
		r.End = w.clk.Now()
	}
	if err == nil || k.stopping {
		if err == nil {
			err = core.ErrWorkCancelled
		}
	}
	k.m.post(core.WorkExited{Token: k.token, Run: k.run, Err: err})
}

// stop asks the run to end: it finishes the call in flight, commits a
// final checkpoint if the sink acknowledged more than the last one, and
// exits.
func (k *work) stop() {
	if k.stopping || k.exited {
		return
	}
	k.stopping = true
	w := k.m.w
	if r := &w.hist.Runs[k.runIdx]; r.Stopped.IsZero() {
		r.Stopped = w.clk.Now()
	}
	if !k.busy {
		k.finish()
	}
}

func (k *work) finish() {
	if k.phase == 3 && k.pos > k.cpPos {
		k.checkpoint(k.pos, func() { k.exit(nil) })
		return
	}
	k.exit(nil)
}

func (k *work) fail(what string, out Outcome) {
	var err error
	switch out {
	case Stale:
		err = fmt.Errorf("hatest: %s of member %s under token %d: %w", what, k.m.id, k.token, fence.ErrStale)
	case Unknown:
		err = fmt.Errorf("hatest: %s of member %s under token %d: %w", what, k.m.id, k.token, ErrOpTimeout)
	case Conflict:
		err = fmt.Errorf("hatest: %s of member %s under token %d: %w", what, k.m.id, k.token, storage.ErrConflict)
	default:
		err = fmt.Errorf("hatest: %s of member %s under token %d: %v", what, k.m.id, k.token, out)
	}
	k.exit(err)
}

func (k *work) readCheckpoint() {
	w := k.m.w
	k.busy = true
	var item storage.Item
	k.call(Op{Resource: "store", Kind: OpGet, Key: w.hist.CheckpointKey, Pos: -1}, func(i int) Outcome {
		var err error
		item, err = w.store.Get(context.Background(), w.hist.CheckpointKey)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			w.hist.Ops[i].Pos = 0
			return NotFound
		case err != nil:
			return Failed
		}
		w.hist.Ops[i].Value = string(item.Value)
		w.hist.Ops[i].Pos = valuePos(string(item.Value))
		return OK
	}, func(out Outcome) {
		k.busy = false
		if k.stopping {
			k.exit(nil)
			return
		}
		switch out {
		case OK:
			k.cpVal, k.cpVer, k.cpPos = string(item.Value), item.Version, valuePos(string(item.Value))
		case NotFound:
			k.cpVal, k.cpVer, k.cpPos = "", 0, 0
		default:
			k.fail("read checkpoint", out)
			return
		}
		k.phase = 1
		if w.opts.positionBeforeFence {
			k.readPosition()
			return
		}
		k.fenceSink()
	})
}

// fenceSink applies an empty batch under the run's token, so that the
// sink refuses every older term's write from now on, before the run reads
// the sink's position. Without it, a write of a deposed member that was
// frozen mid-run can land between this run's read of the position and its
// first batch, and this run applies those records again.
func (k *work) fenceSink() {
	w := k.m.w
	k.busy = true
	k.call(Op{Resource: "sink", Kind: OpApply, Token: k.token, From: -1, Pos: -1}, func(i int) Outcome {
		err := w.sink.Apply(context.Background(), k.sinkToken(), nil)
		return w.settleCall(i, "sink", err)
	}, func(out Outcome) {
		k.busy = false
		if k.stopping {
			k.exit(nil)
			return
		}
		if out != OK {
			k.fail("fence the sink", out)
			return
		}
		k.readPosition()
	})
}

// sinkToken is the token the run passes to the sink: its own, unless the
// planted bug sinkIgnoresTokens makes every write look like the first term.
func (k *work) sinkToken() fence.Token {
	if k.m.w.opts.sinkIgnoresTokens {
		return 1
	}
	return k.token
}

func (k *work) readPosition() {
	w := k.m.w
	k.busy = true
	var sp int64
	k.call(Op{Resource: "sink", Kind: OpPosition, Pos: -1}, func(i int) Outcome {
		p, err := w.sink.Position(context.Background())
		if err != nil {
			return Failed
		}
		n, err := memrepl.DecodePos(p)
		if err != nil {
			return Failed
		}
		sp = int64(n)
		w.hist.Ops[i].Pos = sp
		return OK
	}, func(out Outcome) {
		k.busy = false
		if k.stopping {
			k.exit(nil)
			return
		}
		if out != OK {
			k.fail("read sink position", out)
			return
		}
		from := max(k.cpPos, sp)
		k.phase = 2
		k.checkpoint(from, func() {
			k.phase, k.pos = 3, from
			w.hist.Runs[k.runIdx].From = from
			k.tick()
		})
	})
}

// checkpoint commits pos under the run's token and calls then on success.
func (k *work) checkpoint(pos int64, then func()) {
	w := k.m.w
	w.values++
	val := fmt.Sprintf("pos=%d token=%d member=%s value=%d", pos, k.token, k.m.id, w.values)
	prev, old := k.cpVal, k.cpVer
	var ver storage.Version
	k.busy = true
	k.call(Op{Resource: "store", Kind: OpPut, Key: w.hist.CheckpointKey, Token: k.token, Prev: prev, HasPrev: true, Value: val, Pos: pos},
		func(i int) Outcome {
			var err error
			ver, err = w.store.CompareAndSwap(context.Background(), k.token, w.hist.CheckpointKey, old, []byte(val))
			return w.settleCall(i, "store", err)
		}, func(out Outcome) {
			k.busy = false
			if out != OK {
				k.fail(fmt.Sprintf("checkpoint %d", pos), out)
				return
			}
			k.cpVal, k.cpVer, k.cpPos = val, ver, pos
			k.batches = 0
			if k.phase != 3 || k.stopping {
				then()
				return
			}
			k.putState(then)
		})
}

// putState writes the run's state record, an unconditional fenced Put:
// unlike the checkpoint's compare-and-swap, only the store's fence keeps a
// deposed member from overwriting it.
func (k *work) putState(then func()) {
	w := k.m.w
	w.values++
	val := fmt.Sprintf("state token=%d member=%s value=%d", k.token, k.m.id, w.values)
	k.busy = true
	k.call(Op{Resource: "store", Kind: OpPut, Key: StateKey, Token: k.token, Value: val, Pos: -1},
		func(i int) Outcome {
			_, err := w.store.Put(context.Background(), k.token, StateKey, []byte(val))
			return w.settleCall(i, "store", err)
		}, func(out Outcome) {
			k.busy = false
			if out != OK {
				k.fail("put state", out)
				return
			}
			if k.stopping {
				k.finish()
				return
			}
			then()
		})
}

// StateKey is the store key under which a World's members keep their
// state record, next to the checkpoint key "checkpoint".
const StateKey = "state"

// tick applies the next batch, if the source has one, or waits for the
// next BatchEvery.
func (k *work) tick() {
	w := k.m.w
	if k.stopping {
		k.finish()
		return
	}
	recs := w.source.Records()
	if int64(len(recs)) <= k.pos {
		k.ticker = k.m.after(w.opts.BatchEvery, k.tick)
		return
	}
	end := min(int64(len(recs)), k.pos+int64(w.opts.Batch))
	batch := recs[k.pos:end]
	from := k.pos
	k.busy = true
	if w.opts.checkpointEarly {
		// Planted bug: the checkpoint goes out with the batch instead of
		// after the sink acknowledged it.
		k.cpVer = k.earlyCheckpoint(end)
	}
	k.call(Op{Resource: "sink", Kind: OpApply, Token: k.token, From: from, Pos: end}, func(i int) Outcome {
		if !w.opts.unconditionalApply && w.sinkPos() != from {
			// The sink moved since this run read its position: a call
			// of an earlier run (of this term, restarted, or of a
			// deposed one) landed late. Applying would duplicate.
			return Conflict
		}
		err := w.sink.Apply(context.Background(), k.sinkToken(), batch)
		return w.settleCall(i, "sink", err)
	}, func(out Outcome) {
		k.busy = false
		if out != OK {
			k.fail(fmt.Sprintf("apply of records %d..%d", from+1, end), out)
			return
		}
		k.pos = end
		k.batches++
		if k.stopping {
			k.finish()
			return
		}
		if k.batches >= w.opts.CheckpointEvery {
			k.checkpoint(k.pos, func() { k.ticker = k.m.after(w.opts.BatchEvery, k.tick) })
			return
		}
		k.ticker = k.m.after(w.opts.BatchEvery, k.tick)
	})
}

// earlyCheckpoint is the planted bug of Options.checkpointEarly: it writes
// the checkpoint straight into the store (as a call whose answer is not
// awaited) and returns the version it got.
func (k *work) earlyCheckpoint(pos int64) storage.Version {
	w := k.m.w
	w.values++
	val := fmt.Sprintf("pos=%d token=%d member=%s value=%d", pos, k.token, k.m.id, w.values)
	now := w.clk.Now()
	ver, err := w.store.CompareAndSwap(context.Background(), k.token, w.hist.CheckpointKey, k.cpVer, []byte(val))
	op := Op{Resource: "store", Member: k.m.id, Kind: OpPut, Key: w.hist.CheckpointKey, Token: k.token, Prev: k.cpVal, HasPrev: true, Value: val, Pos: pos, Start: now, End: now, Outcome: settled(err)}
	w.hist.Ops = append(w.hist.Ops, op)
	if err != nil {
		return k.cpVer
	}
	w.admitted(len(w.hist.Ops)-1, "store")
	k.cpVal, k.cpPos = val, pos
	return ver
}

// call makes a call for the run; the reply is dropped once the run has
// exited (it was abandoned at its stop timeout).
func (k *work) call(op Op, serve func(i int) Outcome, reply func(Outcome)) {
	k.m.w.net.call(k.m, op, serve, func(out Outcome) {
		if !k.exited {
			reply(out)
		}
	})
}

// sinkPos is the sink's position as a record count.
func (w *World) sinkPos() int64 {
	p, err := w.sink.Position(context.Background())
	if err != nil {
		return -1
	}
	n, err := memrepl.DecodePos(p)
	if err != nil {
		return -1
	}
	return int64(n)
}

// valuePos reads the position out of a checkpoint value written by work.
func valuePos(v string) int64 {
	f, ok := strings.CutPrefix(v, "pos=")
	if !ok {
		return -1
	}
	f, _, _ = strings.Cut(f, " ")
	n, err := strconv.ParseInt(f, 10, 64)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

var _ replicate.Sink = (*memrepl.DurableSink)(nil)

// settled classifies the error of a simulated call. Every call here knows
// whether it took effect, so an error that is neither a refusal nor a
// conflict means it did not: Failed, never Unknown.
func settled(err error) Outcome {
	switch {
	case err == nil:
		return OK
	case errors.Is(err, fence.ErrStale):
		return Stale
	case errors.Is(err, storage.ErrConflict):
		return Conflict
	}
	return Failed
}

// settleCall classifies the error of call i on resource res and, if the call
// took effect, records that res admitted its token.
func (w *World) settleCall(i int, res string, err error) Outcome {
	out := settled(err)
	if out == OK {
		w.admitted(i, res)
	}
	return out
}
