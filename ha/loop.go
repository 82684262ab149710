package ha

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hakit/hakit/dns"
	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/ha/internal/core"
	"github.com/hakit/hakit/lease"
	"github.com/hakit/hakit/lease/clock"
)

// This file is the Node's edge: the loop that owns the core Machine, feeds
// it inputs and carries out its actions (campaign, promote, work, demote,
// release, timers). Operator commands and maintenance mode are in
// maintenance.go, health checks in check.go.

// loop is the edge: it owns the machine and carries out its actions.
type loop struct {
	n   *Node
	cfg *Config
	clk clock.Clock
	log *slog.Logger
	m   *core.Machine

	bg       context.Context // lives until the loop exits
	wg       sync.WaitGroup  // goroutines that send inputs
	terms    map[fence.Token]lease.Term
	won      chan lease.Term // terms won by a campaign, to be registered
	campaign context.CancelFunc
	promote  context.CancelFunc
	work     *workRun
	timers   map[core.TimerKind]func()
	wonAt    time.Time
	lostAt   time.Time // when this member last saw the leader go away
}

type workRun struct {
	token  fence.Token
	run    int
	cancel context.CancelFunc
	done   chan error
	exited chan struct{} // closed when the work function returned
}

// send delivers an input to the loop unless it has exited.
func (l *loop) send(ev core.Input) {
	select {
	case l.n.inputs <- ev:
	case <-l.bg.Done():
	}
}

// spawn runs f on a goroutine the loop waits for before it returns.
func (l *loop) spawn(f func()) {
	l.wg.Add(1)
	go func() { defer l.wg.Done(); f() }()
}

func (l *loop) run(ctx context.Context) error {
	bg, cancelBG := context.WithCancel(context.Background())
	l.bg = bg
	defer func() {
		cancelBG()
		l.wg.Wait()
		// A campaign won after the loop decided to exit is given back.
		for t, term := range l.terms {
			rctx, cancel := context.WithTimeout(context.Background(), l.cfg.StopTimeout)
			_ = term.Resign(rctx)
			cancel()
			delete(l.terms, t)
		}
		if err := l.cfg.Elector.Close(); err != nil {
			l.log.Warn("close elector", "err", err)
		}
	}()

	pol := core.Policy{ID: l.cfg.ID, HoldOff: l.cfg.HoldOff, CampaignRetry: l.cfg.CampaignRetry,
		Restart:           core.RestartPolicy(l.cfg.Restart),
		Failback:          core.FailbackPolicy(l.cfg.Failback),
		RequireApproval:   l.cfg.RequireApproval,
		SharedMaintenance: l.cfg.Shared != nil}
	for _, c := range l.cfg.Checks {
		pol.Checks = append(pol.Checks, core.CheckPolicy{Name: c.Name, Rise: c.Rise, Fall: c.Fall})
	}
	l.m = core.New(pol, l.clk.Now())
	for i, c := range l.cfg.Checks {
		l.spawn(func() { l.runCheck(i, c) })
	}
	if l.cfg.Shared != nil {
		l.spawn(l.pollMaintenance)
	}
	leaders := l.cfg.Elector.Observe(bg)
	l.spawn(func() {
		for ld := range leaders {
			l.send(core.LeaderChanged{Leader: ld})
		}
	})

	stopping := ctx.Done()
	if l.exec(l.m.Start(l.clk.Now())) {
		return nil
	}
	for {
		var ev core.Input
		select {
		case ev = <-l.n.inputs:
		case term := <-l.won:
			// Registering the term is the loop's job, so that no map is
			// shared between goroutines.
			t := term.Token()
			l.terms[t] = term
			ev = core.Won{Token: t}
		case <-stopping:
			stopping = nil
			ev = core.Stop{}
		}
		if l.exec(l.m.Step(l.clk.Now(), ev)) {
			return nil
		}
	}
}

// exec carries out actions in order and reports whether the loop must exit.
func (l *loop) exec(acts []core.Action) (exit bool) {
	for _, a := range acts {
		switch a := a.(type) {
		case core.Campaign:
			l.startCampaign()
		case core.CancelCampaign:
			if l.campaign != nil {
				l.campaign()
				l.campaign = nil
			}
		case core.ResignStray:
			l.release(a.Token, "")
		case core.Promote:
			l.startPromote(a.Token)
		case core.CancelPromote:
			if l.promote != nil {
				l.promote()
				l.promote = nil
			}
		case core.StartWork:
			l.startWork(a.Token, a.Run)
		case core.StopWork:
			l.stopWork(a.Token, a.Run)
		case core.DemoteSwitch:
			l.demoteSwitch(a.Token)
		case core.Release:
			l.release(a.Token, a.TransferTo)
		case core.SetTimer:
			l.setTimer(a.Kind, a.D)
		case core.CancelTimer:
			if stop := l.timers[a.Kind]; stop != nil {
				stop()
				delete(l.timers, a.Kind)
			}
		case core.Forward:
			l.forward(a)
		case core.WriteMaintenance:
			l.writeMaintenance(a)
		case core.Reply:
			l.n.answer(a.ID, a.Err)
		case core.Emit:
			l.emit(eventOfCore(a.Event))
		case core.Exit:
			exit = true
		}
	}
	l.publish()
	return exit
}

func (l *loop) publish() {
	s := statusOfCore(l.m.Status())
	var term lease.Term
	if s.Token != 0 {
		term = l.terms[s.Token] // nil once released: Status then says demoting
	}
	l.n.mu.Lock()
	l.n.status, l.n.term = s, term
	l.n.mu.Unlock()
	if l.n.metrics != nil {
		l.n.metrics.observe(s)
	}
}

func (l *loop) emit(ev Event) {
	attrs := []any{"role", ev.Role, "token", ev.Token}
	switch ev.Kind {
	case EventRole:
		l.log.Info("role changed", append(attrs, "reason", ev.Reason)...)
		l.noteRole(ev)
	case EventHealth:
		l.log.Info("health changed", append(attrs, "healthy", ev.Healthy, "err", ev.Err)...)
	case EventWorkFailed:
		l.log.Warn("work failed", append(attrs, "err", ev.Err)...)
		if l.n.metrics != nil {
			l.n.metrics.restarts.Inc()
		}
	case EventLeader:
		if ev.Leader.IsZero() {
			l.lostAt = ev.Time
		}
		l.log.Debug("leader changed", append(attrs, "leader", ev.Leader.ID, "leader_token", ev.Leader.Token)...)
	default:
		l.log.Info(ev.Kind.String(), attrs...)
	}
	if l.cfg.OnEvent != nil {
		l.cfg.OnEvent(ev)
	}
}

// noteRole records takeover timings for the metrics.
func (l *loop) noteRole(ev Event) {
	switch ev.Role {
	case RolePromoting:
		l.wonAt = ev.Time
	case RoleActive:
		if l.n.metrics == nil {
			return
		}
		from := l.wonAt
		if !l.lostAt.IsZero() && l.lostAt.Before(from) {
			from = l.lostAt
		}
		l.n.metrics.failover.Set(ev.Time.Sub(from).Seconds())
	}
	if l.n.metrics != nil {
		l.n.metrics.transitions.WithLabelValues(ev.Role.String()).Inc()
	}
}

func (l *loop) startCampaign() {
	ctx, cancel := context.WithCancel(l.bg)
	l.campaign = cancel
	l.spawn(func() {
		term, err := l.cfg.Elector.Campaign(ctx)
		if err != nil {
			if ctx.Err() == nil {
				l.send(core.CampaignFailed{Err: fmt.Errorf("ha: campaign: %w", err)})
			}
			return
		}
		t := term.Token()
		l.spawn(func() {
			select {
			case <-term.Done():
				l.send(core.TermEnded{Token: t, Err: term.Err()})
			case <-l.bg.Done():
			}
		})
		// Hand the term to the loop; if the loop has exited, give it back.
		select {
		case l.won <- term:
		case <-l.bg.Done():
			rctx, cancel := context.WithTimeout(context.Background(), l.cfg.StopTimeout)
			_ = term.Resign(rctx)
			cancel()
		}
	})
}

func (l *loop) startPromote(t fence.Token) {
	ctx, cancel := l.termContext(t)
	l.promote = cancel
	term := l.terms[t]
	l.spawn(func() {
		err := l.promoteSteps(ctx, term)
		cancel()
		l.send(core.Promoted{Token: t, Err: err})
	})
}

// termContext returns a context that ends when the term with token t ends,
// when it is cancelled, or when the loop exits.
func (l *loop) termContext(t fence.Token) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(l.bg)
	done := l.terms[t].Done()
	go func() {
		select {
		case <-done:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// promoteSteps runs the promote delay, the pre-promote hook and the
// switcher's Promote (PromoteTerm for a dns.TermSwitcher) for term.
func (l *loop) promoteSteps(ctx context.Context, term lease.Term) error {
	t := term.Token()
	if d := l.cfg.PromoteDelay; d > 0 {
		timer := l.clk.NewTimer(d)
		select {
		case <-timer.C():
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		}
	}
	if l.cfg.PrePromote != nil {
		if err := l.cfg.PrePromote(ctx, t); err != nil {
			return fmt.Errorf("ha: pre-promote hook: %w", err)
		}
	}
	if l.cfg.Switcher != nil {
		if err := dns.PromoteFor(ctx, l.cfg.Switcher, term); err != nil {
			return fmt.Errorf("ha: promote switcher: %w", err)
		}
	}
	return nil
}

func (l *loop) startWork(t fence.Token, run int) {
	// The work's context ends the moment the term does, without a round
	// trip through the loop: that is what keeps the single-active promise
	// even while the loop is busy.
	ctx, cancel := l.termContext(t)
	w := &workRun{token: t, run: run, cancel: cancel, done: make(chan error, 1), exited: make(chan struct{})}
	l.work = w
	term := l.terms[t]
	go func() {
		err := l.cfg.Work(ctx, term)
		if err == nil && ctx.Err() != nil {
			err = core.ErrWorkCancelled
		}
		close(w.exited)
		w.done <- err
	}()
	l.spawn(func() {
		select {
		case err := <-w.done:
			l.send(core.WorkExited{Token: t, Run: run, Err: err})
		case <-l.bg.Done():
		}
	})
}

// stopWork cancels the work and reports its exit, or ErrStopTimeout if it
// overruns StopTimeout (the overrunning goroutine is abandoned; its late
// exit is ignored by run number).
func (l *loop) stopWork(t fence.Token, run int) {
	w := l.work
	if w == nil || w.token != t || w.run != run {
		return
	}
	w.cancel()
	timer := l.clk.NewTimer(l.cfg.StopTimeout)
	l.spawn(func() {
		defer timer.Stop()
		select {
		case <-timer.C():
			l.log.Error("work did not stop in time; abandoning it", "token", t, "timeout", l.cfg.StopTimeout)
			l.send(core.WorkExited{Token: t, Run: run, Err: ErrStopTimeout})
		case <-w.exited:
		case <-l.bg.Done():
		}
	})
}

func (l *loop) demoteSwitch(t fence.Token) {
	if l.cfg.Switcher == nil {
		l.spawnSend(func() core.Input { return core.SwitchDemoted{Token: t} })
		return
	}
	l.spawnSend(func() core.Input {
		ctx, cancel := context.WithTimeout(l.bg, l.cfg.StopTimeout)
		defer cancel()
		err := l.cfg.Switcher.Demote(ctx, t)
		if err != nil {
			err = fmt.Errorf("ha: demote switcher: %w", err)
		}
		return core.SwitchDemoted{Token: t, Err: err}
	})
}

// release resigns the term with token t, or transfers it to the member
// named to.
func (l *loop) release(t fence.Token, to string) {
	term := l.terms[t]
	delete(l.terms, t)
	if term == nil {
		l.spawnSend(func() core.Input { return core.Released{Token: t} })
		return
	}
	l.spawnSend(func() core.Input {
		ctx, cancel := context.WithTimeout(l.bg, l.cfg.StopTimeout)
		defer cancel()
		var err error
		if to != "" {
			tr, ok := l.cfg.Elector.(lease.Transferer)
			if !ok {
				err = fmt.Errorf("ha: switchover to %q: the elector cannot transfer the lease to a named member", to)
			} else if err = tr.Transfer(ctx, to); err != nil {
				err = fmt.Errorf("ha: transfer to %q: %w", to, err)
			}
		}
		// Resign also after a transfer: it is a no-op on an ended term,
		// and it releases the lease if the transfer failed.
		if rerr := term.Resign(ctx); rerr != nil && err == nil {
			err = fmt.Errorf("ha: resign: %w", rerr)
		}
		return core.Released{Token: t, Err: err}
	})
}

// spawnSend runs f on a goroutine and sends the event it returns.
func (l *loop) spawnSend(f func() core.Input) {
	l.spawn(func() { l.send(f()) })
}

func (l *loop) setTimer(k core.TimerKind, d time.Duration) {
	if stop := l.timers[k]; stop != nil {
		stop()
	}
	timer := l.clk.NewTimer(d)
	ctx, cancel := context.WithCancel(l.bg)
	l.timers[k] = func() { cancel(); timer.Stop() }
	l.spawn(func() {
		select {
		case <-timer.C():
			l.send(core.TimerFired{Kind: k})
		case <-ctx.Done():
		}
	})
}
