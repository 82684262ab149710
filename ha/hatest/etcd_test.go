package hatest

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hakit/hakit/ha"
	"github.com/hakit/hakit/lease"
	"github.com/hakit/hakit/lease/etcdlease"
	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/memrepl"
	"github.com/hakit/hakit/storage/etcdstore"
	"github.com/hakit/hakit/storage/etcdstore/etcdtest"
)

var etcdCycles = flag.Int("hatest.etcdcycles", 5, "fault cycles of TestEtcdCluster (each takes one to three seconds)")

// etcdCluster is three ha.Nodes on one in-process etcd, each through its
// own proxy, with a growing source and a shared durable sink, recorded.
type etcdCluster struct {
	t       *testing.T
	ids     []string
	src     *memrepl.Source
	sink    *memrepl.DurableSink
	rec     *Recorder
	proxies map[string]*etcdtest.Proxy
	nodes   map[string]*ha.Node
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

const (
	etcdTTL      = time.Second
	etcdHoldOff  = 300 * time.Millisecond
	etcdStopTime = 2 * time.Second
)

// startEtcdCluster starts the cluster; wrap, if set, wraps each member's
// elector (to plant a bug in it).
func startEtcdCluster(t *testing.T, wrap func(lease.Elector) lease.Elector) *etcdCluster {
	srv := etcdtest.Start(t)
	c := &etcdCluster{t: t, ids: []string{"e0", "e1", "e2"}, src: &memrepl.Source{}, sink: &memrepl.DurableSink{},
		rec: &Recorder{CheckpointKey: "checkpoint", DecodePos: memrepl.DecodePos}, proxies: map[string]*etcdtest.Proxy{}, nodes: map[string]*ha.Node{}}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	t.Cleanup(func() { cancel(); c.wg.Wait() })

	// The source grows all the time.
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		n := 0
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				data := make([][]byte, 5)
				for i := range data {
					n++
					data[i] = fmt.Appendf(nil, "r%d", n)
				}
				c.src.Append(data...)
			}
		}
	}()

	for _, id := range c.ids {
		p := etcdtest.NewProxy(t, srv)
		cli := p.Client(t)
		var el lease.Elector
		el, err := etcdlease.New(etcdlease.Config{Client: cli, ID: id, Prefix: "hatest/election", TTL: etcdTTL, DriftMargin: etcdTTL / 4})
		if err != nil {
			t.Fatal(err)
		}
		if wrap != nil {
			el = wrap(el)
		}
		store := c.rec.Store(id, etcdstore.New(cli, "hatest/store/"))
		rsink := c.rec.Sink(id, c.sink)
		work := c.rec.Work(id, func(ctx context.Context, term lease.Term) error {
			tok := term.Token()
			s := &replicate.Stream{Source: c.src, Sink: rsink, Store: store, Key: c.rec.CheckpointKey,
				MaxRecords: 20, CheckpointRecords: 40, CheckpointInterval: 50 * time.Millisecond, StopTimeout: time.Second}
			return s.Run(ctx, tok)
		})
		n, err := ha.New(ha.Config{ID: id, Elector: el, Work: work, HoldOff: etcdHoldOff, StopTimeout: etcdStopTime, OnEvent: c.rec.OnEvent(id, nil)})
		if err != nil {
			t.Fatal(err)
		}
		c.proxies[id], c.nodes[id] = p, n
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			if err := n.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("node %s: %v", id, err)
			}
		}()
	}
	return c
}

// active waits until a member other than not is active and returns it.
func (c *etcdCluster) active(not string, within time.Duration) string {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		for _, id := range c.ids {
			if id != not && c.nodes[id].Status().Role == ha.RoleActive {
				return id
			}
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}
	c.t.Fatalf("no member other than %q active within %v", not, within)
	return ""
}

// stop stops the nodes and returns the history.
func (c *etcdCluster) stop() *History {
	c.rec.Stop()
	c.cancel()
	c.wg.Wait()
	return c.rec.History(c.src.Records(), c.sink.Records(), true)
}

// TestEtcdCluster is the real-etcd counterpart of TestProperty: three
// ha.Nodes elected by etcdlease, each talking to one in-process etcd
// through its own fault-injecting proxy, running a real replicate.Stream
// that keeps its checkpoint in etcdstore and applies to a shared durable
// sink. Each cycle cuts the active member's link (blackhole both ways or
// towards etcd only, paused both ways or towards the member only, or a
// delay), waits for another member to take over where the fault forces
// one, and heals. The recorded history goes through every checker.
func TestEtcdCluster(t *testing.T) {
	const ttl, holdOff, stopTime = etcdTTL, etcdHoldOff, etcdStopTime
	c := startEtcdCluster(t, nil)
	active, proxies, rec := c.active, c.proxies, c.rec

	// The bound after a heal: the lease's TTL, a hold-off, the old run's
	// stop timeout, plus slack for etcd client reconnection (retry every
	// 500 ms) and a loaded machine.
	bound := ttl + holdOff + stopTime + 3*time.Second

	cur := active("", 10*time.Second)
	faults := 0
	for c := range *etcdCycles {
		p := proxies[cur]
		kind := c % 5
		switch kind {
		case 0:
			p.Blackhole(etcdtest.Both)
		case 1:
			p.Pause(etcdtest.Both)
		case 2:
			// Slower than a keepalive round but within the TTL: the holder
			// may keep its term or lose it; either is fine.
			p.Delay(etcdtest.Both, ttl/5)
		case 3:
			// Requests vanish, answers would flow: keepalives never arrive.
			p.Blackhole(etcdtest.ToServer)
		case 4:
			// Requests arrive, answers wait: etcd keeps renewing a lease
			// whose holder hears nothing and fences itself. Whether another
			// member takes over depends on when the holder's resignation
			// gets through; either is fine.
			p.Pause(etcdtest.ToClient)
		}
		faults++
		var next string
		if kind == 2 || kind == 4 {
			time.Sleep(2 * ttl) // let the faulty link run for a while
			next = "(no failover required)"
		} else {
			next = active(cur, 3*ttl+bound)
		}
		p.Heal()
		rec.Healed(bound)
		t.Logf("cycle %d: fault %d on %s, active now %s", c, kind, cur, next)
		cur = active("", bound)
	}
	time.Sleep(ttl) // a little steady state after the last heal
	h := c.stop()
	if err := Check(h); err != nil {
		logNonLinearizable(t, h)
		t.Fatalf("%d cycles, %d faults: %v", *etcdCycles, faults, err)
	}
	t.Logf("%d cycles, %d faults, %d calls, %d runs, %d records delivered, violations: 0", *etcdCycles, faults, len(h.Ops), len(h.Runs), len(h.Target))
}

// lateElector is a planted bug: its terms' Done closes delay after the
// real one, so the Node stops its work after its lease may have expired.
type lateElector struct {
	lease.Elector
	delay time.Duration
}

func (e lateElector) Campaign(ctx context.Context) (lease.Term, error) {
	t, err := e.Elector.Campaign(ctx)
	if err != nil {
		return nil, err
	}
	lt := &lateTerm{Term: t, done: make(chan struct{})}
	go func() {
		<-t.Done()
		time.AfterFunc(e.delay, func() { close(lt.done) })
	}()
	return lt, nil
}

type lateTerm struct {
	lease.Term
	done chan struct{}
}

func (t *lateTerm) Done() <-chan struct{} { return t.done }

// TestEtcdCatchesLateDone plants an elector whose Done closes three TTLs
// late into the real-etcd cluster: after a blackhole of the active member
// another takes over while the first still works, and CheckSingleActive
// must say so.
func TestEtcdCatchesLateDone(t *testing.T) {
	c := startEtcdCluster(t, func(e lease.Elector) lease.Elector { return lateElector{e, 3 * etcdTTL} })
	cur := c.active("", 10*time.Second)
	c.proxies[cur].Blackhole(etcdtest.Both)
	c.active(cur, 10*time.Second)
	c.proxies[cur].Heal()
	h := c.stop()
	err := CheckSingleActive(h)
	if !errors.Is(err, ErrViolation) {
		t.Fatalf("CheckSingleActive = %v, want a violation", err)
	}
	t.Log(err)
}
