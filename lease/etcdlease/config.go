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

// ErrInvalidConfig is wrapped by every error New returns for a Config it
// rejects; the message names the field and the rule.
var ErrInvalidConfig = errors.New("etcdlease: invalid config")

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
	// holder gives up its term. It must cover the difference between the
	// holder's and the etcd leader's clock rates over one TTL and the time
	// the holder needs to notice Done. It must be positive and at most
	// TTL/4. Default TTL/10: quartz clocks drift by well under 0.1 %, so
	// the margin mostly buys scheduling slack, and 10 % of the TTL is
	// hundreds of milliseconds at practical TTLs while keeping failover
	// within 10 % of the bare etcd election's.
	DriftMargin time.Duration

	// Logger receives the Elector's logs. Nil discards them.
	Logger *slog.Logger

	// Clock measures the lease deadline and schedules keepalives. Nil
	// means the real clock. Timeouts of individual etcd requests use
	// real time regardless.
	Clock clock.Clock
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
		c.DriftMargin = c.TTL / 10
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = clock.Real()
	}
	return c
}

// validate checks a Config that withDefaults has filled in.
func (c Config) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...)
	}
	switch {
	case c.Client == nil:
		return bad("Client is nil")
	case c.ID == "":
		return bad("ID is empty")
	case len(c.ID) > MaxIDLen:
		return bad("ID has %d bytes, more than %d", len(c.ID), MaxIDLen)
	case !utf8.ValidString(c.ID):
		return bad("ID %q is not valid UTF-8", c.ID)
	case len(c.Addr) > MaxAddrLen:
		return bad("Addr has %d bytes, more than %d", len(c.Addr), MaxAddrLen)
	case !utf8.ValidString(c.Addr):
		return bad("Addr %q is not valid UTF-8", c.Addr)
	case c.TTL < time.Second:
		return bad("TTL %v is below the 1s minimum", c.TTL)
	case c.TTL%time.Second != 0:
		return bad("TTL %v is not a whole number of seconds (etcd grants leases in seconds)", c.TTL)
	case c.DriftMargin < 0:
		return bad("DriftMargin %v is negative", c.DriftMargin)
	case c.DriftMargin > c.TTL/4:
		return bad("DriftMargin %v is more than TTL/4 (%v); it must be well below TTL %v", c.DriftMargin, c.TTL/4, c.TTL)
	}
	return nil
}
