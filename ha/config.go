package ha

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/hakit/hakit/dns"
	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/lease"
	"github.com/hakit/hakit/lease/clock"
	"github.com/hakit/hakit/storage"
	"github.com/prometheus/client_golang/prometheus"
)

// WorkFunc is the replication work a Node runs while it is active. Its ctx
// ends when the term ends or the Node steps down; it must then return
// promptly (within Config.StopTimeout). Every write that matters should
// carry t. WorkFunc should run until ctx ends: a return while the term
// still holds, with or without an error, counts as a failure for the
// restart policy.
type WorkFunc func(ctx context.Context, t fence.Token) error

// Config configures a Node. Zero fields take the defaults documented on
// each; New validates the result and names the field of any error.
type Config struct {
	// ID names this member; it must be unique in the cluster and match the
	// Elector's member ID. Required.
	ID string
	// Elector is this member's handle on the election. Required. The Node
	// closes it when Run returns.
	Elector lease.Elector
	// Work is run while this member is active. Required.
	Work WorkFunc
	// Switcher points traffic at this member on promotion and away on
	// demotion; use dns.Multi for several. Optional.
	Switcher dns.Switcher
	// PrePromote, if set, runs synchronously after the term is won and
	// before the switcher is promoted (e.g. to warm a cache or replay a
	// log). An error ends the term.
	PrePromote func(ctx context.Context, t fence.Token) error
	// PromoteDelay waits this long after winning before promoting, for
	// resources that cannot check fencing tokens: like Chubby's lock-delay,
	// it gives a deposed holder's in-flight writes time to drain. Default 0.
	PromoteDelay time.Duration
	// StopTimeout bounds how long a demotion waits for the work to return
	// after its ctx ended. A work that overruns is abandoned (its writes
	// still fail the fence) and reported. Default 10 s.
	StopTimeout time.Duration

	// Checks gate campaigning: while any check is failing (after its
	// Rise/Fall hysteresis) the member does not campaign, and an active
	// member steps down.
	Checks []Check
	// HoldOff is how long a member that stepped down waits before it
	// campaigns again (flap damping). Default 5 s.
	HoldOff time.Duration
	// Restart is the policy for work that fails while the term holds.
	Restart RestartPolicy
	// Failback selects manual (the zero value: a recovered former primary
	// rejoins as a standby) or automatic failback to a preferred member.
	Failback FailbackPolicy
	// RequireApproval makes this member take the active role only after
	// an operator calls Approve, once per takeover: for a cross-region
	// disaster-recovery standby where automatic failover is not wanted.
	RequireApproval bool

	// Shared, if set, makes maintenance mode cluster-wide: Pause and
	// Resume on any member reach the active member, which stores the flag
	// under SharedKey with its token, and every member reads it every
	// SharedPoll. Use the store the work keeps its checkpoints in (all
	// members must see the same one). Without Shared, maintenance mode is
	// per member.
	Shared storage.Store
	// SharedKey is the key of the maintenance flag. Default
	// DefaultSharedKey.
	SharedKey string
	// SharedPoll is how often each member reads the flag. Default 1 s.
	SharedPoll time.Duration

	// AdminToken is the bearer token the admin POST endpoints of Handler
	// require, and that the Node sends when it forwards a request to the
	// active member. With no token the admin endpoints refuse every
	// request. It is never logged.
	AdminToken string
	// Forward carries an operator command ("switchover", with the
	// successor's ID or "" in to; "pause"; "resume") from a standby to the
	// active member; the default posts to the matching admin endpoint at
	// the leader's advertised address (lease.Leader.Addr) with AdminClient.
	Forward func(ctx context.Context, leader lease.Leader, command, to string) error
	// AdminClient is the HTTP client of the default Forward (set its TLS
	// config for https addresses). Default: a client with a 10 s timeout.
	AdminClient *http.Client

	// OnEvent, if set, receives every Event synchronously and in order on
	// the Node's loop goroutine; it must not block for long or call back
	// into the Node's blocking methods.
	OnEvent func(Event)
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// Registerer, if set, gets the Node's Prometheus metrics, labelled with
	// the member ID. Nothing is registered globally.
	Registerer prometheus.Registerer
	// Clock drives every timer; default clock.Real().
	Clock clock.Clock
}

// DefaultSharedKey is the default key of the shared maintenance flag.
const DefaultSharedKey = "hakit/ha/maintenance"

// ErrConfig is wrapped by every validation error of New.
var ErrConfig = errors.New("ha: invalid config")

func (c Config) withDefaults() Config {
	if c.StopTimeout == 0 {
		c.StopTimeout = 10 * time.Second
	}
	if c.HoldOff == 0 {
		c.HoldOff = 5 * time.Second
	}
	if c.Restart.Max == 0 {
		c.Restart.Max = 3
	}
	if c.Restart.Window == 0 {
		c.Restart.Window = time.Minute
	}
	if c.Restart.Backoff == 0 {
		c.Restart.Backoff = 100 * time.Millisecond
	}
	if c.Restart.MaxBackoff == 0 {
		c.Restart.MaxBackoff = 5 * time.Second
	}
	if c.Failback.Preferred != "" && c.Failback.Dwell == 0 {
		c.Failback.Dwell = 30 * time.Second
	}
	if c.SharedKey == "" {
		c.SharedKey = DefaultSharedKey
	}
	if c.SharedPoll == 0 {
		c.SharedPoll = time.Second
	}
	if c.AdminClient == nil {
		c.AdminClient = &http.Client{Timeout: 10 * time.Second}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = clock.Real()
	}
	return c
}

func (c Config) validate() error {
	bad := func(field, rule string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(rule, args...))
	}
	switch {
	case c.ID == "":
		return bad("ID", "must not be empty")
	case c.Elector == nil:
		return bad("Elector", "is required")
	case c.Work == nil:
		return bad("Work", "is required")
	case c.PromoteDelay < 0:
		return bad("PromoteDelay", "must not be negative, got %v", c.PromoteDelay)
	case c.StopTimeout < 0:
		return bad("StopTimeout", "must not be negative, got %v", c.StopTimeout)
	case c.HoldOff < 0:
		return bad("HoldOff", "must not be negative, got %v", c.HoldOff)
	case c.Restart.Window < 0:
		return bad("Restart.Window", "must not be negative, got %v", c.Restart.Window)
	case c.Restart.Backoff < 0 || c.Restart.MaxBackoff < c.Restart.Backoff:
		return bad("Restart.Backoff", "must satisfy 0 <= Backoff <= MaxBackoff, got %v and %v", c.Restart.Backoff, c.Restart.MaxBackoff)
	case c.SharedPoll < 0:
		return bad("SharedPoll", "must not be negative, got %v", c.SharedPoll)
	case c.SharedKey != "" && storage.ValidateKey(c.SharedKey) != nil:
		return bad("SharedKey", "%v", storage.ValidateKey(c.SharedKey))
	case c.Failback.Dwell < 0:
		return bad("Failback.Dwell", "must not be negative, got %v", c.Failback.Dwell)
	}
	for i, ch := range c.Checks {
		if err := ch.validate(); err != nil {
			return bad(fmt.Sprintf("Checks[%d] (%s)", i, ch.Name), "%v", err)
		}
	}
	return nil
}
