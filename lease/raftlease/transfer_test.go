package raftlease

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hakit/hakit/lease"
)

// TestTransfer: a planned switchover to a named member; the old term ends
// before the new one begins, and the token grows.
func TestTransfer(t *testing.T) {
	c := newCluster(t, 3, nil)
	ctx := testCtx(t, 20*time.Second)
	a := c.groups["a"]
	ta, err := a.Campaign(ctx)
	if err != nil {
		t.Fatal(err)
	}
	won := make(chan lease.Term, 1)
	go func() {
		tc, err := c.groups["c"].Campaign(ctx)
		if err != nil {
			t.Error(err)
			close(won)
			return
		}
		select {
		case <-ta.Done():
		default:
			t.Error("c's Campaign returned while a's term was open")
		}
		won <- tc
	}()
	if err := a.Transfer(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if err := ta.Err(); !errors.Is(err, lease.ErrResigned) {
		t.Fatalf("a's term after Transfer: %v, want lease.ErrResigned", err)
	}
	tc := <-won
	if tc == nil {
		t.FailNow()
	}
	if tc.Token() <= ta.Token() {
		t.Fatalf("token %d after transfer, not above %d", tc.Token(), ta.Token())
	}
	eventually(t, 5*time.Second, "a to see c lead", func() error {
		l, err := a.Leader(ctx)
		if err == nil && l.ID != "c" {
			err = fmt.Errorf("leader %+v", l)
		}
		return err
	})

	// Errors: not the leader, not a member.
	if err := a.Transfer(ctx, "b"); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("Transfer from a follower: %v, want ErrNotLeader", err)
	}
	if err := c.groups["c"].Transfer(ctx, "zz"); err == nil {
		t.Fatal("Transfer to a non-member succeeded")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := c.groups["c"].Transfer(cctx, "a"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Transfer with a cancelled context: %v", err)
	}
}
