package etcdlease

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hakit/hakit/lease/clock"
)

const (
	// DefaultTTL is the lease TTL when Config.TTL is zero.
	DefaultTTL = 5 * time.Second
	// DefaultPrefix is the key prefix when Config.Prefix is empty.
	DefaultPrefix = "hakit/election/"
	// MaxIDLen is the longest member ID, in bytes.
	MaxIDLen = 256
	// MaxAddrLen is the longest member address, in bytes.
	MaxAddrLen = 1024
)

// ErrConfig is wrapped by every error New returns for a Config it rejects;
// each message reads "etcdlease: invalid config: Field: rule", one per
// broken rule.
var ErrConfig = errors.New("etcdlease: invalid config")

// ErrInvalidConfig is the old name of ErrConfig.
//
// Deprecated: use ErrConfig.
var ErrInvalidConfig = ErrConfig

// Config configures an Elector. The zero value of every field but Client
// and ID has a documented default.
type Config struct {
	// Client is the etcd client the Elector uses. Required. The Elector
	// does not close it.
	Client *clientv3.Client

	// ID names this member in the election. Required; at most MaxIDLen
	// bytes of valid UTF-8.
	ID string

	// Addr is the address this member advertises to observers (for
	// example the host:port of its API). Optional.
	Addr string

	// Prefix is the etcd key prefix of the election; every member of one
	// election uses the same prefix. A "/" is appended if it does not end
	// in one, so that "svc" and "svc2" are different elections. Default
	// DefaultPrefix.
	Prefix string

	// TTL is the lease TTL: how long after losing contact with etcd a
	// holder can keep its term, and so roughly how long a failover takes.
	// It must be a whole number of seconds, at least 1 s, because etcd
	// grants leases in seconds; etcd raises it to its own minimum (1.5 ×
	// the election timeout). Default DefaultTTL.
	TTL time.Duration

	// DriftMargin is how much earlier than etcd can expire the lease the
	// holder gives up its term. It must cover everything that can make
	// the holder act later than its deadline as its own clock sees it:
	//   - the difference between the holder's and the etcd leader's
	//     clock rates over one TTL (quartz clocks: well under 0.1 %);
	//   - how late the holder's deadline timer fires when its process is
	//     starved of CPU (a loaded or throttled machine: tens to hundreds
	//     of milliseconds), and GC pauses;
	//   - the time the holder's work needs to notice Done and stop.
	// The keeper measures how late its own timers fire and ends the term
	// that much earlier; a timer more than DriftMargin/2 late ends it at
	// once (see the package doc). What it cannot cover is a process
	// frozen across its deadline (SIGSTOP, a paused VM): that is what
	// fencing is for. It must be positive and at most TTL/4. Default
	// DefaultDriftMargin(TTL): TTL/10, at least 500 ms.
	DriftMargin time.Duration

	// Logger receives the Elector's logs. Nil means slog.Default().
	Logger *slog.Logger

	// Clock measures the lease deadline and schedules keepalives. Nil
	// means the real clock. Timeouts of individual etcd requests use
	// real time regardless.
	Clock clock.Clock
}

// DefaultDriftMargin is the DriftMargin a Config with TTL ttl and no
// DriftMargin gets: TTL/10, but at least 500 ms (and at most TTL/4, the
// largest allowed), which is 500 ms for TTLs of 2 to 5 s. See
// Config.DriftMargin for what it must cover.
func DefaultDriftMargin(ttl time.Duration) time.Duration {
	return min(max(ttl/10, 500*time.Millisecond), ttl/4)
}

// withDefaults returns c with every zero optional field set to its default.
func (c Config) withDefaults() Config {
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if !strings.HasSuffix(c.Prefix, "/") {
		c.Prefix += "/"
	}
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if c.DriftMargin == 0 && c.TTL > 0 {
		c.DriftMargin = DefaultDriftMargin(c.TTL)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Clock == nil {
		c.Clock = clock.Real()
	}
	return c
}

// validate reports every rule a Config that withDefaults has filled in
// breaks, joined; it changes nothing.
func (c Config) validate() error {
	var errs []error
	bad := func(field, rule string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(rule, args...)))
	}
	if c.Client == nil {
		bad("Client", "is required")
	}
	switch {
	case c.ID == "":
		bad("ID", "must not be empty")
	case len(c.ID) > MaxIDLen:
		bad("ID", "has %d bytes, more than %d", len(c.ID), MaxIDLen)
	case !utf8.ValidString(c.ID):
		bad("ID", "%q is not valid UTF-8", c.ID)
	}
	switch {
	case len(c.Addr) > MaxAddrLen:
		bad("Addr", "has %d bytes, more than %d", len(c.Addr), MaxAddrLen)
	case !utf8.ValidString(c.Addr):
		bad("Addr", "%q is not valid UTF-8", c.Addr)
	}
	switch {
	case c.TTL < time.Second:
		bad("TTL", "%v is below the 1s minimum", c.TTL)
	case c.TTL%time.Second != 0:
		bad("TTL", "%v is not a whole number of seconds (etcd grants leases in seconds)", c.TTL)
	}
	switch {
	case c.DriftMargin < 0:
		bad("DriftMargin", "%v is negative", c.DriftMargin)
	case c.DriftMargin > c.TTL/4:
		bad("DriftMargin", "%v is more than TTL/4 (%v); it must be well below TTL %v", c.DriftMargin, c.TTL/4, c.TTL)
	}
	return errors.Join(errs...)
}
