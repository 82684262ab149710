package hatest

import (
	"time"
)

// A link is one direction between a member and a resource ("store",
// "sink"): from the member when toResource, back to it otherwise.
type link struct {
	member     string
	resource   string
	toResource bool
}

// network carries calls between members and the shared resources. Every
// message takes a delay drawn from the world's random source in
// [0, maxDelay] (so messages overtake each other), may be dropped with
// probability drop, and is lost while its direction of the link is cut.
// Messages are AfterFuncs on the world's Fake, so they arrive inside
// Advance, deterministically.
type network struct {
	w        *World
	cuts     map[link]int // depth of overlapping cuts
	drop     float64
	slow     int // depth of overlapping slow-network faults
	losses   int // depth of overlapping loss faults of a Schedule
	maxDelay time.Duration
}

func (n *network) delay() time.Duration {
	d := n.maxDelay
	if n.slow > 0 {
		d *= 50
	}
	if d <= 0 {
		return 0
	}
	return time.Duration(n.w.rng.Int63n(int64(d) + 1))
}

func (n *network) lost(l link) bool {
	if n.cuts[l] > 0 {
		return true
	}
	return n.drop > 0 && n.w.rng.Float64() < n.drop
}

// call sends op from m to its resource. serve runs at the resource when the
// request arrives and returns the outcome; the op's Applied and Seq are
// for serve to set. reply runs at m (respecting its pauses and crashes)
// with the outcome, or with Unknown if no answer came within the member's
// OpTimeout. Exactly one reply runs per call, unless the member crashed.
func (n *network) call(m *member, op Op, serve func(i int) Outcome, reply func(Outcome)) {
	w := n.w
	op.Member, op.Start, op.Outcome = m.id, w.clk.Now(), Unknown
	i := len(w.hist.Ops)
	w.hist.Ops = append(w.hist.Ops, op)
	inc := m.inc
	answered := false
	timeout := m.clk.AfterFunc(w.opts.OpTimeout, func() {
		m.deliver(inc, func() {
			if answered {
				return
			}
			answered = true
			w.hist.Ops[i].Outcome = Unknown
			reply(Unknown)
		})
	})
	if n.lost(link{m.id, op.Resource, true}) {
		return
	}
	w.clk.AfterFunc(n.delay(), func() {
		out := serve(i)
		if n.lost(link{m.id, op.Resource, false}) {
			w.settle()
			return
		}
		w.clk.AfterFunc(n.delay(), func() {
			m.deliver(inc, func() {
				if answered {
					return
				}
				answered = true
				timeout.Stop()
				w.hist.Ops[i].End = w.clk.Now()
				w.hist.Ops[i].Outcome = out
				reply(out)
			})
		})
		w.settle()
	})
}
