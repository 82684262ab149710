// Package ha is the Node: the single-active supervisor that ties election,
// fencing, switching, health checks and the replication work together.
//
// A Node campaigns through a lease.Elector while it is healthy. When it wins
// a term it promotes (an optional delay, an optional pre-promote hook, the
// Switcher), then runs the work with the term (WorkFunc: its fencing token,
// Done, Deadline, and what a store needs to bind writes to it). When the term
// ends — the lease was lost, a check failed, the work kept failing, an
// operator asked for a switchover, or the process is shutting down — it
// demotes in a fixed order: the work's context is cancelled and the Node
// waits for it to return, the switcher is demoted, and the lease is released
// (or transferred to a named successor).
//
// The work's context ends the moment the term's Done channel closes, without
// waiting for the Node's own loop, so guarantee 1 of package hakit holds as
// long as the work stops acting when its context ends. Guarantee 2 holds
// whatever the work does, provided its writes carry the token.
//
// What the Node says about itself is decided when it is asked: Status,
// the /primary and /standby endpoints and a dns.Health switcher check the
// term's Done and Deadline at that moment (lease.Valid), so a member whose
// process was frozen past its deadline answers "not primary" on waking,
// before its loop has run.
//
// The Node's decisions are a pure function of its inputs (the internal
// core package); timers, the network and the work run at the edge, in the
// Node's loop.
package ha

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/ha/internal/core"
	"github.com/hakit/hakit/lease"
)

// Node runs one member of an HA cluster. Create it with New and run it with
// Run; the other methods are safe to call from any goroutine.
type Node struct {
	cfg     Config
	metrics *metrics

	inputs   chan core.Input // to the loop; unread until Run starts
	loopDone chan struct{}   // closed when Run returns

	mu      sync.Mutex
	status  Status
	term    lease.Term // the term of status.Token, nil when none
	running bool
	ran     bool
	nextID  uint64
	replies map[uint64]chan error
}

// New fills in cfg's defaults, validates the result (the error names every
// broken field and wraps ErrConfig) and returns a Node. Nothing starts
// until Run.
func New(cfg Config) (*Node, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, replies: map[uint64]chan error{}, inputs: make(chan core.Input), loopDone: make(chan struct{})}
	n.status = Status{ID: cfg.ID, Role: RoleStandby}
	if cfg.Registerer != nil {
		m, err := newMetrics(cfg.Registerer, cfg.ID, cfg.Checks)
		if err != nil {
			return nil, fmt.Errorf("ha: register metrics: %w", err)
		}
		n.metrics = m
	}
	if cfg.Forward == nil {
		n.cfg.Forward = n.forwardHTTP
	}
	return n, nil
}

// Status returns a snapshot of the Node. Role is decided now: if the loop
// has the member active but its term has ended or passed its deadline on
// Config.Clock (lease.Valid), Role is RoleDemoting, whatever the loop has
// yet to notice.
func (n *Node) Status() Status {
	n.mu.Lock()
	s, term := n.status, n.term
	n.mu.Unlock()
	s.Checks = append([]CheckState(nil), s.Checks...)
	if s.Role == RoleActive {
		if now := n.cfg.Clock.Now(); !lease.Valid(term, now) {
			s.Role, s.Since = RoleDemoting, now
			if term != nil && term.Deadline().Before(now) {
				s.Since = term.Deadline()
			}
		}
	}
	return s
}

// Switchover hands the active role to the member named to, or to any other
// member if to is empty. On the active member it drains the work (cancels
// its context and waits for it to return, so that a replicate.Stream writes
// its final checkpoint), demotes the switcher and transfers the lease; it
// returns once the lease is released. On a standby it forwards the request
// to the active member (Config.Forward). Naming a member requires an
// Elector that implements lease.Transferer.
func (n *Node) Switchover(ctx context.Context, to string) error {
	return n.command(ctx, core.CmdSwitchover, to)
}

// Pause turns maintenance mode on: no failover and no step-down. The active
// member keeps working even if its checks fail; a standby stops
// campaigning. A lost lease still ends the term: fencing is never paused.
// With Config.Shared the mode holds for the whole cluster (see there):
// Pause returns once the active member has stored it, or, with no active
// member, once it holds here.
func (n *Node) Pause(ctx context.Context) error { return n.command(ctx, core.CmdPause, "") }

// Resume turns maintenance mode off. With Config.Shared and no active
// member (the active one died during maintenance, and nobody took over)
// Resume lets this member campaign; once active, it clears the shared flag.
func (n *Node) Resume(ctx context.Context) error { return n.command(ctx, core.CmdResume, "") }

// Approve lets a member configured with RequireApproval take the active
// role once.
func (n *Node) Approve(ctx context.Context) error { return n.command(ctx, core.CmdApprove, "") }

// command sends an operator command to the loop and waits for its answer.
// Before Run starts it waits for Run; after Run returned it fails with
// ErrNotRunning.
func (n *Node) command(ctx context.Context, c core.Cmd, to string) error {
	n.mu.Lock()
	if n.ran && !n.running {
		n.mu.Unlock()
		return ErrNotRunning
	}
	n.nextID++
	id := n.nextID
	reply := make(chan error, 1)
	n.replies[id] = reply
	inputs, done := n.inputs, n.loopDone
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		delete(n.replies, id)
		n.mu.Unlock()
	}()
	select {
	case inputs <- core.Command{ID: id, Cmd: c, To: to}:
	case <-done:
		return ErrNotRunning
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-done:
		return ErrNotRunning
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (n *Node) answer(id uint64, err error) {
	n.mu.Lock()
	ch := n.replies[id]
	n.mu.Unlock()
	if ch != nil {
		ch <- err // buffered; each id is answered once
	}
}

// Run runs the Node until ctx ends, then demotes cleanly (drains the work,
// demotes the switcher, resigns) and closes the Elector. It returns nil
// after a clean stop. Run may be called once.
func (n *Node) Run(ctx context.Context) error {
	n.mu.Lock()
	if n.ran {
		n.mu.Unlock()
		return errors.New("ha: Run called twice")
	}
	n.ran, n.running = true, true
	n.mu.Unlock()

	l := &loop{n: n, cfg: &n.cfg, clk: n.cfg.Clock, log: n.cfg.Logger.With("member", n.cfg.ID),
		terms: map[fence.Token]lease.Term{}, won: make(chan lease.Term), timers: map[core.TimerKind]func(){}}
	err := l.run(ctx)

	n.mu.Lock()
	n.running = false
	close(n.loopDone)
	n.status.Role, n.term = RoleStopped, nil
	n.mu.Unlock()
	return err
}
