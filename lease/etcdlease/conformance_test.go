package etcdlease_test

import (
	"sync"
	"testing"
	"time"

	"github.com/hakit/hakit/lease"
	"github.com/hakit/hakit/lease/electortest"
	"github.com/hakit/hakit/lease/etcdlease"
	"github.com/hakit/hakit/storage/etcdstore/etcdtest"
)

// conformanceTTL is short so the suite's failover cases run quickly, and
// long enough that Handover (a resignation) is clearly faster than expiry.
const conformanceTTL = 2 * time.Second

// etcdCluster is one election on a shared etcd server. Each member's
// client reaches the server through its own proxy; Isolate blackholes it.
type etcdCluster struct {
	s      *etcdtest.Server
	prefix string

	mu      sync.Mutex
	proxies map[string]*etcdtest.Proxy
}

func (c *etcdCluster) Members() []string { return []string{"m1", "m2", "m3", "m4", "m5"} }

func (c *etcdCluster) Member(t *testing.T, id string) lease.Elector {
	p := etcdtest.NewProxy(t, c.s)
	c.mu.Lock()
	c.proxies[id] = p
	c.mu.Unlock()
	e, err := etcdlease.New(etcdlease.Config{
		Client: p.Client(t), ID: id, Addr: id + ".example:7000", Prefix: c.prefix,
		TTL: conformanceTTL, Logger: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (c *etcdCluster) proxy(t *testing.T, id string) *etcdtest.Proxy {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.proxies[id]
	if p == nil {
		t.Fatalf("no member %q", id)
	}
	return p
}

func (c *etcdCluster) Isolate(t *testing.T, id string) { c.proxy(t, id).Blackhole(etcdtest.Both) }
func (c *etcdCluster) Heal(t *testing.T, id string)    { c.proxy(t, id).Heal() }

func (c *etcdCluster) Timing() electortest.Timing {
	return electortest.Timing{
		Handover: 500 * time.Millisecond,
		Failover: conformanceTTL + 2*time.Second,
		Settle:   100 * time.Millisecond,
	}
}

func TestConformance(t *testing.T) {
	s := etcdtest.Start(t, etcdtest.WithTLS())
	electortest.Run(t, func(t *testing.T) electortest.Cluster {
		return &etcdCluster{s: s, prefix: newPrefix(t), proxies: map[string]*etcdtest.Proxy{}}
	})
}
