package raftlease

import (
	"context"
	"time"

	"github.com/hakit/hakit/lease"
)

// maxObserveQueue bounds the changes queued for one Observe channel.
const maxObserveQueue = 64

// observer feeds one Observe channel from a bounded queue, so a slow
// reader delays nothing and holds little: up to maxObserveQueue changes
// wait in order; past that they are replaced by the latest one.
type observer struct {
	ch     chan lease.Leader
	mu     chan struct{} // a one-slot lock around queue
	queue  []lease.Leader
	signal chan struct{}
	closed chan struct{}
}

// publish records the lease holder and the Raft leader seen by the run
// loop and queues a change for every observer.
func (g *Group) publish(l lease.Leader, leadName string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.leadID = leadName
	g.leadSeen = g.lead
	if g.leadChanged != nil {
		close(g.leadChanged)
		g.leadChanged = nil
	}
	if l == g.view {
		return
	}
	g.view = l
	for o := range g.observers {
		o.push(l)
	}
}

// publishHolder queues a newly applied holder record for observers.
func (g *Group) publishHolder(l lease.Leader) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if l == g.view {
		return
	}
	g.view = l
	for o := range g.observers {
		o.push(l)
	}
}

func (o *observer) push(l lease.Leader) {
	o.mu <- struct{}{}
	if len(o.queue) >= maxObserveQueue {
		// Coalesce: the reader is this far behind, so it learns the
		// current holder next instead of every change in between.
		o.queue = append(o.queue[:0], l)
	} else {
		o.queue = append(o.queue, l)
	}
	<-o.mu
	select {
	case o.signal <- struct{}{}:
	default:
	}
}

// Observe returns a channel that receives the current lease holder at
// once and then every change as this member learns of it, in order, the
// zero Leader meaning none. Up to 64 changes are queued for a slow
// reader; a reader further behind gets the latest holder next, the
// changes in between coalesced away, so no reader makes the member hold
// an unbounded queue. The channel is closed when ctx ends or the Group is
// closed.
func (g *Group) Observe(ctx context.Context) <-chan lease.Leader {
	o := &observer{
		ch:     make(chan lease.Leader),
		mu:     make(chan struct{}, 1),
		signal: make(chan struct{}, 1),
		closed: make(chan struct{}),
	}
	g.mu.Lock()
	if g.closing || g.stopErr != nil {
		g.mu.Unlock()
		close(o.ch)
		return o.ch
	}
	o.queue = append(o.queue, g.view)
	g.observers[o] = struct{}{}
	g.mu.Unlock()
	go func() {
		defer close(o.ch)
		defer func() {
			g.mu.Lock()
			delete(g.observers, o)
			g.mu.Unlock()
		}()
		for {
			// Taken off the queue before it is sent: a push that
			// coalesces meanwhile must not lose the latest value.
			o.mu <- struct{}{}
			var next lease.Leader
			have := len(o.queue) > 0
			if have {
				next = o.queue[0]
				o.queue = o.queue[1:]
			}
			<-o.mu
			if !have {
				select {
				case <-o.signal:
					continue
				case <-ctx.Done():
					return
				case <-o.closed:
					return
				}
			}
			select {
			case o.ch <- next:
			case <-ctx.Done():
				return
			case <-o.closed:
				return
			}
		}
	}()
	return o.ch
}

func (g *Group) closeObservers() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for o := range g.observers {
		close(o.closed)
		delete(g.observers, o)
	}
}

// waitLead waits until ok(Raft leader) holds, ctx ends or, if limit is
// positive, limit passes on the group's clock (then it returns nil).
func (g *Group) waitLead(ctx context.Context, ok func(lead uint64) bool, limit time.Duration) error {
	var expire <-chan time.Time
	if limit > 0 {
		timer := g.clk.NewTimer(limit)
		defer timer.Stop()
		expire = timer.C()
	}
	for {
		g.mu.Lock()
		lead := g.leadSeen
		if g.leadChanged == nil {
			g.leadChanged = make(chan struct{})
		}
		changed := g.leadChanged
		g.mu.Unlock()
		if ok(lead) {
			return nil
		}
		select {
		case <-changed:
		case <-expire:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-g.donec:
			return g.stoppedErr()
		}
	}
}
