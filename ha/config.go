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

// WorkFunc is the replication work a Node runs while it is active. It gets
// the term it runs under: Token for every write that matters, Done and
// Deadline to stop in time, and the Term itself for stores that bind
// writes to it (etcdstore's BindTerm and ForTerm, replicate.Stream's
// RunTerm). ctx ends the moment the term's Done closes or the Node steps
// down; the work must then return promptly (within Config.StopTimeout).
//
// The term belongs to the Node: the work must not Resign it (to hand
// over, use Node.Switchover). A Resign from the work ends the term like
// any loss, and the Node demotes.
//
// WorkFunc should run until ctx ends: a return while the term still
// holds, with or without an error, counts as a failure for the restart
// policy. A function of the token alone fits with TokenWork.
type WorkFunc func(ctx context.Context, term lease.Term) error

// TokenWork adapts work that needs only the term's fencing token (a
// replicate.Stream's Run, say) to a WorkFunc.
func TokenWork(work func(ctx context.Context, t fence.Token) error) WorkFunc {
	return func(ctx context.Context, term lease.Term) error { return work(ctx, term.Token()) }
}

// RestartPolicy restarts failed work in place, with exponential backoff,
// up to Max times within Window; the next failure steps the member down.
// Zero fields take the defaults named on each.
type RestartPolicy struct {
	// Max is the number of restarts allowed within Window. Default 3; a
	// negative value disables restarts (the first failure steps down).
	Max int
	// Window is the sliding window over which restarts are counted.
	// Default 1 min.
	Window time.Duration
	// Backoff is the delay before the first restart; each further
	// restart within the window doubles it, up to MaxBackoff. Default
	// 100 ms.
	Backoff time.Duration
	// MaxBackoff caps the delay between restarts. Default 5 s, or
	// Backoff if that is longer.
	MaxBackoff time.Duration
}

// FailbackPolicy decides whether the active role returns to a preferred
// member after it recovers. The zero value is manual failback: a recovered
// former primary rejoins as a standby.
type FailbackPolicy struct {
	// Preferred names the member that should be active when healthy.
	// Empty means manual failback: nobody is preferred.
	Preferred string
	// Dwell is how long the preferred member must be healthy as a standby
	// before it asks the active member to hand over. Default 30 s (with
	// Preferred set).
	Dwell time.Duration
}

// Config configures a Node. Zero fields take the defaults documented on
// each; New fills them in, then validates the result and reports every
// field that breaks its rule.
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
	// demotion; use dns.Multi for several. A dns.TermSwitcher (dns.Health,
	// and Multi or Retry around one) is promoted with the term, so that
	// it can answer from the term at the moment it is asked. Optional.
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
	// CampaignRetry is how long a member waits after a Campaign failed
	// (the elector could not reach its service, say) before it campaigns
	// again. Default 1 s, or HoldOff if that is shorter.
	CampaignRetry time.Duration
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
	// members must see the same one). A lease.TermBinder (etcdstore) is
	// bound to the term for the write. Without Shared, maintenance mode
	// is per member.
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
	// active member. The default posts to the matching admin endpoint at
	// the leader's advertised API address (lease.Leader.Addr: a URL, or
	// host:port for http) with AdminClient and the AdminToken. It sends
	// the token only over https or to a loopback address; for any other
	// address it refuses with an error wrapping ErrForward, so give the
	// elector an https API address (raftlease.Config.APIAddr,
	// etcdlease.Config.Addr) or set Forward.
	Forward func(ctx context.Context, leader lease.Leader, command, to string) error
	// AdminClient is the HTTP client of the default Forward (set its TLS
	// config for https addresses). Default: a client with a 10 s timeout.
	AdminClient *http.Client

	// OnEvent, if set, receives every Event synchronously and in order on
	// the Node's loop goroutine; it must not block for long or call back
	// into the Node's blocking methods.
	OnEvent func(Event)
	// Logger receives structured logs. Nil means slog.Default(); to
	// discard them, pass slog.New(slog.DiscardHandler).
	Logger *slog.Logger
	// Registerer, if set, gets the Node's Prometheus metrics, labelled with
	// the member ID. Nothing is registered globally.
	Registerer prometheus.Registerer
	// Clock drives every timer and is the clock a term's Deadline is
	// compared with when the Node answers for it; it must be the clock
	// the Elector runs on. Default clock.Real().
	Clock clock.Clock
}

// DefaultSharedKey is the default key of the shared maintenance flag.
const DefaultSharedKey = "hakit/ha/maintenance"

// ErrConfig is wrapped by every validation error of New. Each message
// has the form "ha: invalid config: Field: rule".
var ErrConfig = errors.New("ha: invalid config")

// withDefaults returns c with every zero field that has a default set to
// it. The Checks slice is copied, never changed in place.
func (c Config) withDefaults() Config {
	if c.StopTimeout == 0 {
		c.StopTimeout = 10 * time.Second
	}
	if c.HoldOff == 0 {
		c.HoldOff = 5 * time.Second
	}
	if c.CampaignRetry == 0 {
		c.CampaignRetry = min(c.HoldOff, time.Second)
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
		c.Restart.MaxBackoff = max(5*time.Second, c.Restart.Backoff)
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
		c.Logger = slog.Default()
	}
	if c.Clock == nil {
		c.Clock = clock.Real()
	}
	if c.Checks != nil {
		checks := make([]Check, len(c.Checks))
		for i, ch := range c.Checks {
			checks[i] = ch.withDefaults()
		}
		c.Checks = checks
	}
	return c
}

// validate reports every rule c breaks, joined; it changes nothing.
func (c Config) validate() error {
	var errs []error
	bad := func(field, rule string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(rule, args...)))
	}
	notNegative := func(field string, d time.Duration) {
		if d < 0 {
			bad(field, "must not be negative, got %v", d)
		}
	}
	if c.ID == "" {
		bad("ID", "must not be empty")
	}
	if c.Elector == nil {
		bad("Elector", "is required")
	}
	if c.Work == nil {
		bad("Work", "is required")
	}
	notNegative("PromoteDelay", c.PromoteDelay)
	notNegative("StopTimeout", c.StopTimeout)
	notNegative("HoldOff", c.HoldOff)
	if c.CampaignRetry <= 0 {
		bad("CampaignRetry", "must be positive, got %v", c.CampaignRetry)
	}
	notNegative("Restart.Window", c.Restart.Window)
	notNegative("Restart.Backoff", c.Restart.Backoff)
	if c.Restart.MaxBackoff < c.Restart.Backoff {
		bad("Restart.MaxBackoff", "must be at least Restart.Backoff %v, got %v", c.Restart.Backoff, c.Restart.MaxBackoff)
	}
	notNegative("SharedPoll", c.SharedPoll)
	if err := storage.ValidateKey(c.SharedKey); err != nil {
		bad("SharedKey", "%v", err)
	}
	notNegative("Failback.Dwell", c.Failback.Dwell)
	names := map[string]int{}
	for i, ch := range c.Checks {
		field := fmt.Sprintf("Checks[%d]", i)
		if j, dup := names[ch.Name]; dup && ch.Name != "" {
			bad(field+".Name", "%q is also the name of Checks[%d]", ch.Name, j)
		}
		names[ch.Name] = i
		for _, r := range ch.broken() {
			bad(field+"."+r.field, "%s", r.rule)
		}
	}
	return errors.Join(errs...)
}
