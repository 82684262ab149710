package raftlease

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

func memberIDs(t *testing.T, g *Group) []string {
	t.Helper()
	ms, err := g.Members(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range ms {
		ids = append(ids, m.ID)
	}
	return ids
}

// TestMembership adds a fourth member at run time, which catches up and
// can lead, then removes one of the original three.
func TestMembership(t *testing.T) {
	c := newCluster(t, 3, func(cfg *Config) { cfg.SnapshotEntries, cfg.CompactionMargin = 8, 2 })
	ctx := testCtx(t, 30*time.Second)
	a := c.groups["a"]
	term, err := a.Campaign(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Enough writes that the new member is sent a snapshot.
	acked := writeKeys(t, a, term.Token(), "k", 30)

	c.addSlot("d")
	if err := a.AddMember(ctx, "d", c.peers["d"]); err != nil {
		t.Fatal(err)
	}
	if err := a.AddMember(ctx, "d", c.peers["d"]); err == nil {
		t.Fatal("adding d twice succeeded")
	}
	cfg := c.config("d")
	cfg.Join = true
	d := c.startWith("d", cfg)
	for _, g := range c.groups {
		eventually(t, 10*time.Second, "membership on "+g.ID(), func() error {
			if got := memberIDs(t, g); !slices.Equal(got, []string{"a", "b", "c", "d"}) {
				return fmt.Errorf("members %v", got)
			}
			return nil
		})
	}
	c.raftLeader(ctx)
	checkKeys(t, d, acked)

	// The new member can lead.
	if err := a.Transfer(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	td, err := d.Campaign(ctx)
	if err != nil {
		t.Fatal(err)
	}
	more := writeKeys(t, d, td.Token(), "d", 5)

	if err := d.RemoveMember(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if err := d.RemoveMember(ctx, "c"); err == nil {
		t.Fatal("removing c twice succeeded")
	}
	c.stop("c")
	for _, id := range []string{"a", "b", "d"} {
		g := c.groups[id]
		eventually(t, 10*time.Second, "membership on "+id, func() error {
			if got := memberIDs(t, g); !slices.Equal(got, []string{"a", "b", "d"}) {
				return fmt.Errorf("members %v", got)
			}
			return nil
		})
		checkKeys(t, g, more)
	}
	// Three voters left: one more may fail.
	c.stop("b")
	writeKeys(t, d, td.Token(), "two-of-three", 3)
}
