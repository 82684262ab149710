package raftnet_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hakit/hakit/ha"
	"github.com/hakit/hakit/ha/hatest"
	"github.com/hakit/hakit/ha/hatest/raftnet"
	"github.com/hakit/hakit/lease"
	"github.com/hakit/hakit/lease/clock"
	"github.com/hakit/hakit/lease/raftlease"
	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/memrepl"
)

var cycles = flag.Int("raftnet.cycles", 5, "fault cycles of TestRaftCluster")

const (
	tick     = 20 * time.Millisecond
	holdOff  = 200 * time.Millisecond
	stopTime = time.Second
)

// member is one process of the cluster: a Raft group member and the
// ha.Node elected by it.
type member struct {
	id     string
	dir    string
	rate   float64 // its clock's rate: drift within the group's margin
	node   *ha.Node
	cancel context.CancelFunc
	done   chan struct{}
}

// cluster runs three members on one Network with a shared source and
// durable sink, recording everything in rec.
type cluster struct {
	t     *testing.T
	net   *raftnet.Network
	src   *memrepl.Source
	sink  *memrepl.DurableSink
	rec   *hatest.Recorder
	peers map[string]string
	ms    map[string]*member
}

func (c *cluster) start(id string) {
	c.t.Helper()
	m := c.ms[id]
	clk := hatest.Drift(clock.Real(), m.rate)
	g, err := raftlease.Start(context.Background(), raftlease.Config{ID: id, Peers: c.peers, DataDir: m.dir,
		TickInterval: tick, ElectionTicks: 10, DriftMargin: 3 * tick, Transport: c.net.Transport(id), Clock: clk})
	if err != nil {
		c.t.Fatal(err)
	}
	store := c.rec.Store(id, g.Store())
	sink := c.rec.Sink(id, c.sink)
	work := c.rec.Work(id, func(ctx context.Context, term lease.Term) error {
		tok := term.Token()
		s := &replicate.Stream{Source: c.src, Sink: sink, Store: store, Key: c.rec.CheckpointKey,
			MaxRecords: 20, CheckpointRecords: 40, CheckpointInterval: 50 * time.Millisecond, StopTimeout: stopTime / 2}
		return s.Run(ctx, tok)
	})
	n, err := ha.New(ha.Config{ID: id, Elector: g, Work: work, HoldOff: holdOff, StopTimeout: stopTime, OnEvent: c.rec.OnEvent(id, nil), Clock: clk})
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.node, m.cancel, m.done = n, cancel, make(chan struct{})
	go func() {
		defer close(m.done)
		if err := n.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			c.t.Errorf("node %s: %v", id, err)
		}
	}()
}

// stop stops member id's Node, which closes its group: a crash as far as
// the others can tell, with the log kept for a restart.
func (c *cluster) stop(id string) {
	m := c.ms[id]
	m.cancel()
	<-m.done
	m.node = nil
}

// active waits until a member other than not is active.
func (c *cluster) active(not string, within time.Duration) string {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		for id, m := range c.ms {
			if id != not && m.node != nil && m.node.Status().Role == ha.RoleActive {
				return id
			}
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}
	c.t.Fatalf("no member other than %q active within %v", not, within)
	return ""
}

// TestRaftCluster runs three ha.Nodes elected by a raftlease group over a
// raftnet Network, each running a real replicate.Stream that keeps its
// checkpoint in the group's replicated store and applies to a shared
// durable sink. Each cycle injects one fault around the active member:
// isolation, a one-way cut either way, a crash with restart from its log,
// or loss with reordering delays; the members' clocks drift apart. The
// history goes through hatest.Check.
func TestRaftCluster(t *testing.T) {
	c := &cluster{t: t, net: raftnet.New(1, nil), src: &memrepl.Source{}, sink: &memrepl.DurableSink{},
		rec: &hatest.Recorder{CheckpointKey: "checkpoint", DecodePos: memrepl.DecodePos}, peers: map[string]string{}, ms: map[string]*member{}}
	// Each member's clock drifts by up to 5%: the drift margin (3 ticks)
	// covers twice that over the longest election timeout (20 ticks).
	ids := []string{"r0", "r1", "r2"}
	rates := []float64{0.95, 1, 1.05}
	for i, id := range ids {
		c.peers[id] = id
		c.ms[id] = &member{id: id, dir: t.TempDir(), rate: rates[i]}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the source grows all the time
		defer wg.Done()
		tk := time.NewTicker(5 * time.Millisecond)
		defer tk.Stop()
		n := 0
		for {
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
				data := make([][]byte, 5)
				for i := range data {
					n++
					data[i] = fmt.Appendf(nil, "r%d", n)
				}
				c.src.Append(data...)
			}
		}
	}()
	defer func() {
		cancel()
		wg.Wait()
		for id, m := range c.ms {
			if m.node != nil {
				c.stop(id)
			}
		}
	}()
	for _, id := range ids {
		c.start(id)
	}

	// After a heal: two election timeouts (up to 2 x 10 ticks each, and a
	// possible split vote), the hold-off, the old run's stop timeout, and
	// slack for a loaded machine.
	bound := 4*10*tick + holdOff + stopTime + 3*time.Second
	cur := c.active("", 10*time.Second)
	for i := range *cycles {
		kind := i % 5
		others := []string{}
		for _, id := range ids {
			if id != cur {
				others = append(others, id)
			}
		}
		var heal func()
		switch kind {
		case 0: // isolate
			for _, o := range others {
				c.net.Cut(cur, o)
				c.net.Cut(o, cur)
			}
			heal = func() {
				for _, o := range others {
					c.net.Restore(cur, o)
					c.net.Restore(o, cur)
				}
			}
		case 1: // it can hear, but nothing it sends arrives
			for _, o := range others {
				c.net.Cut(cur, o)
			}
			heal = func() {
				for _, o := range others {
					c.net.Restore(cur, o)
				}
			}
		case 2: // what it sends arrives, but it hears nothing
			for _, o := range others {
				c.net.Cut(o, cur)
			}
			heal = func() {
				for _, o := range others {
					c.net.Restore(o, cur)
				}
			}
		case 3: // crash, restart from the log after the failover
			c.stop(cur)
			victim := cur
			heal = func() { c.start(victim) }
		case 4: // lossy, reordering network; a failover may or may not happen
			c.net.SetLoss(0.1)
			c.net.SetDelay(2 * tick)
			heal = func() { c.net.SetLoss(0); c.net.SetDelay(0) }
		}
		next := cur
		if kind == 4 {
			time.Sleep(2 * time.Second)
		} else {
			next = c.active(cur, bound)
		}
		heal()
		c.rec.Healed(bound)
		t.Logf("cycle %d: fault %d on %s; %s took over", i, kind, cur, next)
		cur = c.active("", bound)
	}
	time.Sleep(time.Second)
	c.rec.Stop()
	for id, m := range c.ms {
		if m.node != nil {
			c.stop(id)
		}
	}
	h := c.rec.History(c.src.Records(), c.sink.Records(), true)
	sent, lost := c.net.Stats()
	if err := hatest.Check(h); err != nil {
		t.Fatalf("%d cycles: %v", *cycles, err)
	}
	t.Logf("%d cycles, %d raft messages (%d lost), %d calls, %d runs, %d records delivered, violations: 0",
		*cycles, sent, lost, len(h.Ops), len(h.Runs), len(h.Target))
}
