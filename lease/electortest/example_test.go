package electortest_test

import (
	"testing"
	"time"

	"github.com/hakit/hakit/lease"
	"github.com/hakit/hakit/lease/clock"
	"github.com/hakit/hakit/lease/electortest"
	"github.com/hakit/hakit/lease/memlease"
)

// realCluster is a Cluster for memlease on the real clock: the smallest
// backend harness. A networked backend does the same with a server per
// Cluster (or a fresh key prefix on a shared one) and a fault-injecting
// link per member.
type realCluster struct{ e *memlease.Election }

func newRealCluster(t *testing.T) electortest.Cluster {
	e, err := memlease.NewElection(clock.Real(), memlease.Options{TTL: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return realCluster{e}
}

func (c realCluster) Members() []string { return []string{"a", "b", "c"} }

func (c realCluster) Member(t *testing.T, id string) lease.Elector {
	m, err := c.e.Member(id, id+".example:7000")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func (c realCluster) Isolate(t *testing.T, id string) {
	if err := c.e.Isolate(id); err != nil {
		t.Fatal(err)
	}
}

func (c realCluster) Heal(t *testing.T, id string) {
	if err := c.e.Heal(id); err != nil {
		t.Fatal(err)
	}
}

func (c realCluster) Timing() electortest.Timing {
	return electortest.Timing{Handover: 150 * time.Millisecond, Failover: 600 * time.Millisecond}
}

// A backend's test file runs the whole suite with one call:
//
//	func TestConformance(t *testing.T) {
//		electortest.Run(t, newRealCluster)
//	}
func ExampleRun() {
	var _ func(*testing.T, func(*testing.T) electortest.Cluster) = electortest.Run
	var _ func(*testing.T) electortest.Cluster = newRealCluster
}

func TestRealClockExample(t *testing.T) {
	if testing.Short() {
		t.Skip("takes a few seconds on the real clock")
	}
	electortest.Run(t, newRealCluster)
}
