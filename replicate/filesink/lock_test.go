package filesink

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/hakit/hakit/replicate"
)

// A sink whose file lock is held by another process (here a second Sink,
// stopped inside its commit, as a SIGSTOPped member would be) must not
// keep a call waiting past its context: the Stream's stop sequence and a
// term's end depend on it.
func TestLockWaitHonoursContext(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.log")
	holder, waiter := mustOpen(t, path), mustOpen(t, path)
	inside, release := make(chan struct{}), make(chan struct{})
	holder.crash = func(step string) error {
		if step == "data-written" {
			close(inside)
			<-release
		}
		return nil
	}
	held := make(chan error, 1)
	go func() { held <- holder.Apply(context.Background(), 1, recs(0, 1)) }()
	<-inside
	defer func() {
		close(release)
		if err := <-held; err != nil {
			t.Errorf("the holder's Apply: %v", err)
		}
	}()

	calls := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"Apply", func(ctx context.Context) error { return waiter.Apply(ctx, 2, recs(1, 1)) }},
		{"ApplyHeartbeat", func(ctx context.Context) error {
			return waiter.ApplyHeartbeat(ctx, 2, replicate.Heartbeat{Time: time.Unix(1, 0)})
		}},
		{"Position", func(ctx context.Context) error { _, err := waiter.Position(ctx); return err }},
		{"State", func(ctx context.Context) error { _, err := waiter.State(ctx); return err }},
	}
	for _, c := range calls {
		// The context is live when the call starts, so the call gets
		// as far as the lock before the deadline passes.
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		done := make(chan error, 1)
		go func() { done <- c.call(ctx) }()
		select {
		case err := <-done:
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("%s while the lock is held elsewhere: %v, want context.DeadlineExceeded", c.name, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s still waiting for the file lock 10s after its context ended", c.name)
		}
		cancel()
	}
}
