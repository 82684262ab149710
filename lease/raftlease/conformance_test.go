package raftlease

import (
	"testing"
	"time"

	"github.com/hakit/hakit/lease"
	"github.com/hakit/hakit/lease/electortest"
	"github.com/hakit/hakit/storage"
	"github.com/hakit/hakit/storage/storagetest"
)

// electorCluster runs the elector conformance suite against a group of
// five real members on loopback TCP; Isolate partitions a member at its
// transport. Five, because an Elector here is a Raft member: the suite
// closes two of them in one case and expects the third to win, which
// needs a quorum of the rest.
type electorCluster struct{ c *cluster }

func (e electorCluster) Members() []string { return e.c.ids }

func (e electorCluster) Member(t *testing.T, id string) lease.Elector { return e.c.groups[id] }

func (e electorCluster) Isolate(t *testing.T, id string) { e.c.isolate(id, true) }

func (e electorCluster) Heal(t *testing.T, id string) { e.c.isolate(id, false) }

func (e electorCluster) Timing() electortest.Timing {
	// 20 ms ticks, 25-tick election timeout: a cut-off holder is replaced
	// within 2 x 500 ms plus a few round trips.
	return electortest.Timing{Handover: time.Second, Failover: 4 * time.Second, Settle: 50 * time.Millisecond, Wait: 20 * time.Second}
}

func TestElectorConformance(t *testing.T) {
	electortest.Run(t, func(t *testing.T) electortest.Cluster {
		return electorCluster{newCluster(t, 5, nil)}
	})
}

func TestStoreConformance(t *testing.T) {
	storagetest.TestStore(t, func(t *testing.T) storage.Store {
		c := newCluster(t, 3, nil)
		return c.raftLeader(testCtx(t, 10*time.Second)).Store()
	}, storagetest.WithScale(0.25))
}
