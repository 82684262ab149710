package ha

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hakit/hakit/ha/internal/core"
)

// Check is a health check that gates this member's eligibility. Func runs
// every Interval with a Timeout; a nil error is a pass. Results pass through
// hysteresis: the check turns healthy after Rise consecutive passes and
// unhealthy after Fall consecutive failures, so one slow probe does not
// cause a failover. A check starts unhealthy and its first result decides
// its initial state, so a member neither campaigns before its first probe
// nor waits Rise intervals to start.
type Check struct {
	// Name identifies the check in Status, logs and metrics. Required.
	Name string
	// Func probes; nil means pass. Required.
	Func func(ctx context.Context) error
	// Interval between probes. Default 1 s.
	Interval time.Duration
	// Timeout of one probe. Default Interval.
	Timeout time.Duration
	// Rise is the number of consecutive passes that make a failing check
	// healthy again. Default 2.
	Rise int
	// Fall is the number of consecutive failures that make a healthy
	// check fail. Default 3.
	Fall int
}

func (c Check) withDefaults() Check {
	if c.Interval == 0 {
		c.Interval = time.Second
	}
	if c.Timeout == 0 {
		c.Timeout = c.Interval
	}
	if c.Rise == 0 {
		c.Rise = 2
	}
	if c.Fall == 0 {
		c.Fall = 3
	}
	return c
}

// brokenRule is one rule a field breaks.
type brokenRule struct{ field, rule string }

// broken lists every rule c (with defaults filled in) breaks.
func (c Check) broken() []brokenRule {
	var out []brokenRule
	if c.Name == "" {
		out = append(out, brokenRule{"Name", "must not be empty"})
	}
	if c.Func == nil {
		out = append(out, brokenRule{"Func", "is required"})
	}
	if c.Interval < 0 {
		out = append(out, brokenRule{"Interval", fmt.Sprintf("must not be negative, got %v", c.Interval)})
	}
	if c.Timeout < 0 {
		out = append(out, brokenRule{"Timeout", fmt.Sprintf("must not be negative, got %v", c.Timeout)})
	}
	if c.Rise < 0 {
		out = append(out, brokenRule{"Rise", fmt.Sprintf("must not be negative, got %d", c.Rise)})
	}
	if c.Fall < 0 {
		out = append(out, brokenRule{"Fall", fmt.Sprintf("must not be negative, got %d", c.Fall)})
	}
	return out
}

// ProcessCheck returns a check function that passes while the process whose
// PID is stored in pidFile exists. It fails, naming the file, when the file
// is missing or malformed or the process is gone.
func ProcessCheck(pidFile string) func(context.Context) error {
	return func(context.Context) error {
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return fmt.Errorf("ha: process check: %w", err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 {
			return fmt.Errorf("ha: process check: pid file %s: %q is not a process ID", pidFile, strings.TrimSpace(string(b)))
		}
		// Signal 0 checks existence and permission without delivering
		// anything; EPERM means the process exists under another user.
		if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
			return fmt.Errorf("ha: process check: process %d from %s: %w", pid, pidFile, err)
		}
		return nil
	}
}

// DialCheck returns a check function that passes while a TCP connection to
// addr can be opened within the probe's timeout.
func DialCheck(addr string) func(context.Context) error {
	return func(ctx context.Context) error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return fmt.Errorf("ha: dial check %s: %w", addr, err)
		}
		return c.Close()
	}
}

// runCheck probes check c (index i) every Interval until the loop exits,
// and sends each result to the loop.
func (l *loop) runCheck(i int, c Check) {
	ticker := l.clk.NewTicker(c.Interval)
	defer ticker.Stop()
	for {
		ctx, cancel := context.WithTimeout(l.bg, c.Timeout)
		err := c.Func(ctx)
		cancel()
		if l.n.metrics != nil {
			l.n.metrics.check(c.Name, err)
		}
		l.send(core.CheckResult{Index: i, Err: err})
		select {
		case <-ticker.C():
		case <-l.bg.Done():
			return
		}
	}
}
