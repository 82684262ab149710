package dns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strconv"
	"time"

	"github.com/hashicorp/go-multierror"

	"github.com/hakit/hakit/fence"
)

// ErrCommand is matched by every error of a hook command that Exec ran and
// that failed: it exited non-zero, could not start, or was killed at its
// timeout or when the context ended. The concrete type is *CommandError.
var ErrCommand = errors.New("dns: exec: command failed")

// Environment variables Exec sets for every command it runs.
const (
	EnvToken  = "HAKIT_TOKEN"  // the term's fencing token, in decimal
	EnvRole   = "HAKIT_ROLE"   // RoleActive on promote, RoleStandby on demote
	EnvMember = "HAKIT_MEMBER" // ExecConfig.Member
)

// DefaultExecTimeout bounds each command when ExecConfig.Timeout is 0.
const DefaultExecTimeout = 30 * time.Second

// ExecConfig configures an Exec. Commands are argument vectors, never
// shell strings: to use a shell, say so ([]string{"/bin/sh", "-c", "..."}).
type ExecConfig struct {
	// Member is this member's ID, passed as HAKIT_MEMBER. Required.
	Member string
	// Promote lists the commands run, in order, by Promote.
	Promote [][]string
	// Demote lists the commands run, in order, by Demote.
	Demote [][]string
	// Timeout bounds each command; 0 means DefaultExecTimeout. When it
	// passes, or the call's context ends, the command's process group
	// (the command and the children it started) gets SIGTERM, and
	// SIGKILL after KillGrace.
	Timeout time.Duration
	// KillGrace is how long a command may take to exit after SIGTERM
	// (and how long Exec waits for its output to close); 0 means 5s.
	KillGrace time.Duration
	// Env lists what a command's environment holds besides PATH and the
	// HAKIT_ variables: "NAME=value", or "NAME" to pass this process's
	// value on. Nothing else of this process's environment reaches a
	// command (it may hold the admin token or cloud credentials). PATH is
	// this process's, or DefaultExecPath; an entry here replaces it.
	Env []string
	// Dir is the working directory of every command; "" means this
	// process's.
	Dir string
	// Logger receives each line the commands write, with the command,
	// the stream and the token; nil means slog.Default().
	Logger *slog.Logger
}

// Exec is a Switcher that runs hook commands: the start/stop scripts of a
// classic cluster manager. Each command runs with a minimal environment:
// PATH, what ExecConfig.Env lists, and the token, the role and the member
// ID (EnvToken, EnvRole, EnvMember); it runs with a timeout, and whatever
// it writes to stdout and stderr goes to the logger one line at a time.
//
// Calls are synchronous and ordered: a call waits (as long as its context
// allows) for the call before it to finish, and never cuts a running
// command short. A command is stopped only by its own timeout or by the
// context of the call that started it.
//
// Promote runs the promote commands in order and stops at the first that
// fails. Demote runs every demote command, even after one failed, and
// aggregates the errors. Exec remembers the highest token it has seen and
// refuses an older one with fence.ErrStale without running anything.
// Idempotence is the commands' business: Exec runs them again on a
// repeated call, so they must tolerate it.
type Exec struct {
	cfg   ExecConfig
	log   *slog.Logger
	sem   chan struct{} // one slot: holds the right to run commands
	guard fence.Guard
}

// NewExec fills in cfg's defaults, validates it and returns an Exec. An
// invalid cfg is refused with an error wrapping ErrConfig that names every
// broken field.
func NewExec(cfg ExecConfig) (*Exec, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Exec{cfg: cfg, log: cfg.Logger, sem: make(chan struct{}, 1)}, nil
}

func (c ExecConfig) withDefaults() ExecConfig {
	if c.Timeout == 0 {
		c.Timeout = DefaultExecTimeout
	}
	if c.KillGrace == 0 {
		c.KillGrace = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c ExecConfig) validate() error {
	var errs []error
	bad := func(field, rule string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(rule, args...)))
	}
	if c.Member == "" {
		bad("Member", "must not be empty")
	}
	for _, l := range []struct {
		name string
		cmds [][]string
	}{{"Promote", c.Promote}, {"Demote", c.Demote}} {
		for i, argv := range l.cmds {
			if len(argv) == 0 || argv[0] == "" {
				bad(fmt.Sprintf("%s[%d]", l.name, i), "has no program")
			}
		}
	}
	if c.Timeout < 0 {
		bad("Timeout", "must not be negative, got %v", c.Timeout)
	}
	if c.KillGrace < 0 {
		bad("KillGrace", "must not be negative, got %v", c.KillGrace)
	}
	return errors.Join(errs...)
}

// String names the switcher in Multi's errors.
func (e *Exec) String() string { return "exec" }

// Promote runs the promote commands for the term with token t.
func (e *Exec) Promote(ctx context.Context, t fence.Token) error {
	return e.run(ctx, t, RoleActive, e.cfg.Promote, true)
}

// Demote runs the demote commands for the term with token t.
func (e *Exec) Demote(ctx context.Context, t fence.Token) error {
	return e.run(ctx, t, RoleStandby, e.cfg.Demote, false)
}

func (e *Exec) run(ctx context.Context, t fence.Token, role string, cmds [][]string, stopAtFirst bool) error {
	select {
	case e.sem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("dns: exec: waiting for the previous call: %w", ctx.Err())
	}
	defer func() { <-e.sem }()
	if err := ctx.Err(); err != nil {
		return err
	}
	// Admitted while holding the slot, so that commands run in token order.
	if err := e.guard.Admit(t); err != nil {
		return fmt.Errorf("dns: exec: %s: %w", role, err)
	}
	merr := &multierror.Error{ErrorFormat: oneLine}
	for _, argv := range cmds {
		if err := e.runOne(ctx, t, role, argv); err != nil {
			if stopAtFirst {
				return err
			}
			merr = multierror.Append(merr, err)
		}
	}
	return merr.ErrorOrNil()
}

func (e *Exec) runOne(ctx context.Context, t fence.Token, role string, argv []string) error {
	ctx, cancel := context.WithTimeoutCause(ctx, e.cfg.Timeout, errTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = hookEnv(e.cfg.Env, EnvToken+"="+t.String(), EnvRole+"="+role, EnvMember+"="+e.cfg.Member)
	cmd.Dir = e.cfg.Dir
	setProcessGroup(cmd)
	cmd.Cancel = func() error { return terminate(cmd) }
	cmd.WaitDelay = e.cfg.KillGrace
	log := e.log.With("member", e.cfg.Member, "role", role, "token", t.String(), "command", argv[0])
	stdout := &lineLogger{log: log, stream: "stdout"}
	stderr := &lineLogger{log: log, stream: "stderr"}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	start := time.Now()
	err := cmd.Run()
	if ctx.Err() != nil {
		killGroup(cmd) // children of a stopped hook must not outlive it
	}
	stdout.flush()
	stderr.flush()
	if err == nil {
		log.Info("dns: exec: command succeeded", "elapsed", time.Since(start))
		return nil
	}
	cerr := &CommandError{Role: role, Argv: argv, ExitCode: -1, Err: err}
	if cmd.ProcessState != nil {
		cerr.ExitCode = cmd.ProcessState.ExitCode()
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		cerr.Err = errors.Join(err, ctxErr)
		if context.Cause(ctx) == errTimeout {
			cerr.Timeout = e.cfg.Timeout
		}
	}
	log.Warn("dns: exec: command failed", "err", cerr.Error(), "elapsed", time.Since(start))
	return cerr
}

// CommandError is the error of a hook command. It matches ErrCommand and,
// through Err, the context's error when the command was stopped by one.
type CommandError struct {
	Role     string        // RoleActive for a promote command, RoleStandby for demote
	Argv     []string      // the command
	ExitCode int           // the exit status, or -1 if it did not start or was killed by a signal
	Timeout  time.Duration // non-zero if the command was killed at this timeout
	Err      error         // what os/exec reported
}

// Error names the command and how it ended.
func (e *CommandError) Error() string {
	op := "promote"
	if e.Role == RoleStandby {
		op = "demote"
	}
	how := "exit status " + strconv.Itoa(e.ExitCode)
	switch {
	case e.Timeout > 0:
		how = "killed after timeout " + e.Timeout.String()
	case e.ExitCode < 0:
		how = e.Err.Error()
	}
	return fmt.Sprintf("dns: exec: %s command %q: %s", op, e.Argv, how)
}

// Unwrap returns ErrCommand and the underlying error.
func (e *CommandError) Unwrap() []error { return []error{ErrCommand, e.Err} }

// errTimeout is the cause of a command's context when its own timeout, not
// the caller's context, ended it.
var errTimeout = errors.New("dns: exec: command timeout")

// lineLogger turns a command's output stream into one log record per line.
// Lines longer than maxLine are split. It is written by one goroutine
// (os/exec's copier) and flushed after Wait returned.
type lineLogger struct {
	log    *slog.Logger
	stream string
	buf    []byte
}

const maxLine = 4096

func (l *lineLogger) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			l.buf = append(l.buf, p...)
			for len(l.buf) >= maxLine {
				l.emit(l.buf[:maxLine])
				l.buf = append(l.buf[:0], l.buf[maxLine:]...)
			}
			break
		}
		l.buf = append(l.buf, p[:i]...)
		p = p[i+1:]
		for len(l.buf) > maxLine {
			l.emit(l.buf[:maxLine])
			l.buf = append(l.buf[:0], l.buf[maxLine:]...)
		}
		l.emit(l.buf)
		l.buf = l.buf[:0]
	}
	return n, nil
}

func (l *lineLogger) emit(line []byte) {
	line = bytes.TrimSuffix(line, []byte("\r"))
	l.log.Info("dns: exec: output", "stream", l.stream, "line", string(line))
}

func (l *lineLogger) flush() {
	if len(l.buf) > 0 {
		l.emit(l.buf)
		l.buf = l.buf[:0]
	}
}
