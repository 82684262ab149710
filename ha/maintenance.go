package ha

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/hakit/hakit/ha/internal/core"
	"github.com/hakit/hakit/lease"
	"github.com/hakit/hakit/storage"
)

// This file is the part of the Node's loop that carries operator commands
// to the active member and keeps the shared maintenance flag.

var commandNames = map[core.Cmd]string{
	core.CmdSwitchover: "switchover", core.CmdPause: "pause", core.CmdResume: "resume", core.CmdApprove: "approve",
}

func (l *loop) forward(a core.Forward) {
	l.spawn(func() {
		ctx, cancel := context.WithTimeout(l.bg, l.cfg.StopTimeout)
		defer cancel()
		err := l.cfg.Forward(ctx, a.Leader, commandNames[a.Cmd], a.To)
		if err != nil {
			l.log.Warn("forward command", "command", commandNames[a.Cmd], "leader", a.Leader.ID, "to", a.To, "err", err)
		}
		if a.ID != 0 {
			l.n.answer(a.ID, err)
		}
	})
}

// Values of the shared maintenance flag.
var (
	flagPaused  = []byte("paused")
	flagRunning = []byte("running")
)

// pollMaintenance reads the shared maintenance flag every SharedPoll. A read
// that fails is logged and skipped: the last value read stays in force.
func (l *loop) pollMaintenance() {
	ticker := l.clk.NewTicker(l.cfg.SharedPoll)
	defer ticker.Stop()
	for {
		ctx, cancel := context.WithTimeout(l.bg, l.cfg.SharedPoll)
		it, err := l.cfg.Shared.Get(ctx, l.cfg.SharedKey)
		cancel()
		switch {
		case errors.Is(err, storage.ErrNotFound):
			l.send(core.MaintenanceSeen{Paused: false})
		case err != nil:
			if l.bg.Err() == nil {
				l.log.Warn("read maintenance flag", "key", l.cfg.SharedKey, "err", err)
			}
		default:
			l.send(core.MaintenanceSeen{Paused: bytes.Equal(it.Value, flagPaused)})
		}
		select {
		case <-ticker.C():
		case <-l.bg.Done():
			return
		}
	}
}

// writeMaintenance stores the shared maintenance flag under the term's
// token, through the Store bound to the term if Shared is a
// lease.TermBinder.
func (l *loop) writeMaintenance(a core.WriteMaintenance) {
	store := l.cfg.Shared
	var bindErr error
	if tb, ok := store.(lease.TermBinder); ok && l.terms[a.Token] != nil {
		store, bindErr = tb.ForTerm(l.terms[a.Token])
	}
	l.spawnSend(func() core.Input {
		if bindErr != nil {
			return core.MaintenanceWritten{ID: a.ID, Paused: a.Paused, Err: fmt.Errorf("ha: write maintenance flag %q: bind the store to term %d: %w", l.cfg.SharedKey, a.Token, bindErr)}
		}
		ctx, cancel := context.WithTimeout(l.bg, l.cfg.StopTimeout)
		defer cancel()
		v := flagRunning
		if a.Paused {
			v = flagPaused
		}
		_, err := store.Put(ctx, a.Token, l.cfg.SharedKey, v)
		if err != nil {
			err = fmt.Errorf("ha: write maintenance flag %q: %w", l.cfg.SharedKey, err)
		}
		return core.MaintenanceWritten{ID: a.ID, Paused: a.Paused, Err: err}
	})
}
