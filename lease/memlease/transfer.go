package memlease

import (
	"context"
	"errors"
	"fmt"

	"github.com/hakit/hakit/lease"
)

var (
	// ErrNotHolding is returned by Transfer on a member that holds no
	// term the election still counts.
	ErrNotHolding = errors.New("memlease: not holding the lease")
	// ErrNotWaiting is returned by Transfer when the named member has no
	// campaign waiting, or is cut off or paused.
	ErrNotWaiting = errors.New("memlease: member not waiting for the lease")
)

var _ lease.Transferer = (*Elector)(nil)

// Transfer hands the lease this member holds to member to, which must have
// a campaign waiting: this member's term ends first (Done closes, Err wraps
// lease.ErrResigned), then the lease is granted to to's campaign at once,
// ahead of older campaigns. It returns when to leads. On an error nothing
// has changed: ErrNotHolding, ErrNotWaiting, ErrCutOff for a member that is
// cut off, lease.ErrClosed after Close, or ctx's error.
func (m *Elector) Transfer(ctx context.Context, to string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memlease: transfer from %q to %q: %w", m.id, to, err)
	}
	e := m.e
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case m.closed:
		return fmt.Errorf("memlease: transfer from %q: %w", m.id, lease.ErrClosed)
	case m.cut:
		return fmt.Errorf("memlease: transfer from %q: %w", m.id, ErrCutOff)
	case m.term == nil || e.holder != m.term:
		return fmt.Errorf("memlease: transfer from %q to %q: %w", m.id, to, ErrNotHolding)
	}
	at := -1
	for i, r := range e.queue {
		if r.m.id == to && !r.m.cut && !r.m.paused {
			at = i
			break
		}
	}
	if at < 0 {
		return fmt.Errorf("memlease: transfer from %q to %q: %w", m.id, to, ErrNotWaiting)
	}
	r := e.queue[at]
	e.queue = append([]*request{r}, append(e.queue[:at:at], e.queue[at+1:]...)...)
	t := m.term
	m.endTerm(t, fmt.Errorf("memlease: member %q term %d: transferred to %q: %w", m.id, t.token, to, lease.ErrResigned))
	e.release() // grants the front of the queue: to
	return nil
}
