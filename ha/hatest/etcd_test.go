package hatest

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/ha"
	"github.com/hakit/hakit/lease/etcdlease"
	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/memrepl"
	"github.com/hakit/hakit/storage/etcdstore"
	"github.com/hakit/hakit/storage/etcdstore/etcdtest"
)

var etcdCycles = flag.Int("hatest.etcdcycles", 2, "fault cycles of TestEtcdCluster (each takes a few seconds)")

// TestEtcdCluster is the real-etcd counterpart of TestProperty: three
// ha.Nodes elected by etcdlease, each talking to one in-process etcd
// through its own fault-injecting proxy, running a real replicate.Stream
// that keeps its checkpoint in etcdstore and applies to a shared durable
// sink. Each cycle cuts the active member's link (blackhole, paused link,
// or a delay that must not cause a failover), waits for another member to
// take over, and heals. The recorded history goes through every checker.
func TestEtcdCluster(t *testing.T) {
	const (
		ttl      = time.Second
		holdOff  = 300 * time.Millisecond
		stopTime = 2 * time.Second
	)
	srv := etcdtest.Start(t)
	src := &memrepl.Source{}
	sink := &memrepl.DurableSink{}
	rec := &Recorder{CheckpointKey: "checkpoint", DecodePos: memrepl.DecodePos}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })

	// The source grows all the time.
	wg.Add(1)
	go func() {
		defer wg.Done()
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
				src.Append(data...)
			}
		}
	}()

	ids := []string{"e0", "e1", "e2"}
	proxies := map[string]*etcdtest.Proxy{}
	nodes := map[string]*ha.Node{}
	for _, id := range ids {
		p := etcdtest.NewProxy(t, srv)
		cli := p.Client(t)
		el, err := etcdlease.New(etcdlease.Config{Client: cli, ID: id, Prefix: "hatest/election", TTL: ttl, DriftMargin: ttl / 4})
		if err != nil {
			t.Fatal(err)
		}
		store := rec.Store(id, etcdstore.New(cli, "hatest/store/"))
		rsink := rec.Sink(id, sink)
		work := rec.Work(id, func(ctx context.Context, tok fence.Token) error {
			s := &replicate.Stream{Source: src, Sink: rsink, Store: store, Key: rec.CheckpointKey,
				MaxRecords: 20, CheckpointRecords: 40, CheckpointInterval: 50 * time.Millisecond, StopTimeout: time.Second}
			return s.Run(ctx, tok)
		})
		n, err := ha.New(ha.Config{ID: id, Elector: el, Work: work, HoldOff: holdOff, StopTimeout: stopTime, OnEvent: rec.OnEvent(id, nil)})
		if err != nil {
			t.Fatal(err)
		}
		proxies[id], nodes[id] = p, n
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := n.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("node %s: %v", id, err)
			}
		}()
	}

	// active waits until a member other than not is active and returns it.
	active := func(not string, within time.Duration) string {
		t.Helper()
		deadline := time.Now().Add(within)
		for time.Now().Before(deadline) {
			for _, id := range ids {
				if id != not && nodes[id].Status().Role == ha.RoleActive {
					return id
				}
			}
			time.Sleep(10 * time.Millisecond) // polling with a deadline
		}
		t.Fatalf("no member other than %q active within %v", not, within)
		return ""
	}
	// The bound after a heal: the lease's TTL, a hold-off, the old run's
	// stop timeout, plus slack for etcd client reconnection (retry every
	// 500 ms) and a loaded machine.
	bound := ttl + holdOff + stopTime + 3*time.Second

	cur := active("", 10*time.Second)
	faults := 0
	for c := range *etcdCycles {
		p := proxies[cur]
		switch c % 3 {
		case 0:
			p.Blackhole(etcdtest.Both)
		case 1:
			p.Pause(etcdtest.Both)
		case 2:
			// Slower than a keepalive round but within the TTL: the holder
			// may keep its term or lose it; either is fine.
			p.Delay(etcdtest.Both, ttl/5)
		}
		faults++
		var next string
		if c%3 == 2 {
			time.Sleep(2 * ttl) // let the delayed link run for a while
			next = cur
		} else {
			next = active(cur, 3*ttl+bound)
		}
		p.Heal()
		rec.Healed(bound)
		t.Logf("cycle %d: fault %d on %s, active now %s", c, c%3, cur, next)
		cur = active("", bound)
	}
	time.Sleep(ttl) // a little steady state after the last heal
	rec.Stop()
	cancel()
	wg.Wait()

	h := rec.History(src.Records(), sink.Records(), true)
	if err := Check(h); err != nil {
		logNonLinearizable(t, h)
		t.Fatalf("%d cycles, %d faults: %v", *etcdCycles, faults, err)
	}
	t.Logf("%d cycles, %d faults, %d calls, %d runs, %d records delivered, violations: 0", *etcdCycles, faults, len(h.Ops), len(h.Runs), len(h.Target))
}
