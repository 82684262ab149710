package hatest

import (
	"errors"
	"fmt"
	"math/rand"
	"sync"
	"time"

	"github.com/hakit/hakit/ha/internal/core"
	"github.com/hakit/hakit/lease"
	"github.com/hakit/hakit/lease/clock"
	"github.com/hakit/hakit/lease/memlease"
	"github.com/hakit/hakit/replicate/memrepl"
	"github.com/hakit/hakit/storage"
	"github.com/hakit/hakit/storage/memstore"
)

// Options configures a World. Zero fields take the defaults documented on
// each; durations a member measures (SwitchDelay, StopTimeout, HoldOff,
// BatchEvery, OpTimeout) run on its drifting clock.
type Options struct {
	// Members is the number of members, named m0, m1, ... Default 3.
	Members int
	// Lease configures the in-process election (TTL, DriftMargin,
	// RenewInterval). Default: TTL 2 s and memlease's defaults for the
	// rest. Its OnChange is taken by the World.
	Lease memlease.Options
	// HoldOff is how long a member that stepped down waits before it
	// campaigns again. Default 1 s.
	HoldOff time.Duration
	// SwitchDelay is how long the simulated switcher's Promote and Demote
	// take. Default 20 ms.
	SwitchDelay time.Duration
	// CheckInterval is how often each member probes its health check
	// (which fails while the member is sickened); it turns unhealthy
	// after two failures and healthy after two passes. Default 200 ms.
	CheckInterval time.Duration
	// StopTimeout bounds the wait for a stopping work run. Default 1 s.
	StopTimeout time.Duration
	// MaxDelay is the largest delay of a message on the network; each
	// message draws its own, so messages overtake each other. Default 30 ms.
	MaxDelay time.Duration
	// OpTimeout is how long a member waits for the answer to a call on
	// the store or the sink. Default 500 ms.
	OpTimeout time.Duration
	// MaxDrift bounds each member's clock rate: a member's clock runs at a
	// rate drawn from [1-MaxDrift, 1+MaxDrift]. Default 0.01; it must be
	// below 0.5. A member with a slow clock notices the end of its term
	// late (see the package doc): guarantee 1 holds only while MaxDrift
	// is below Lease.DriftMargin / Lease.TTL (0.1 by default); a larger
	// drift is how a test shows that the margin matters.
	MaxDrift float64
	// Batch is the most records a work run applies at once (default 4),
	// BatchEvery how long it waits for new records when it has caught up
	// (default 50 ms), and CheckpointEvery the number of batches between
	// checkpoints (default 3).
	Batch           int
	BatchEvery      time.Duration
	CheckpointEvery int
	// SourceEvery is how often the source grows, by SourceBatch records.
	// Defaults 100 ms and 3.
	SourceEvery time.Duration
	SourceBatch int
	// Store is the fenced store the members keep their checkpoint in.
	// Default a fresh memstore. A user passes their own Store to check it
	// under the simulation's faults.
	Store storage.Store
	// Log, if set, receives a line per role change and fault.
	Log func(string)

	// Planted bugs, for the tests that prove the checkers can fail.
	lateDone          time.Duration // the edge notices a term's Done this late
	checkpointEarly   bool          // checkpoints go out before the sink acknowledged
	sinkIgnoresTokens bool          // the sink admits every write
	// positionBeforeFence reads the sink's position before the sink has
	// admitted the run's token, as replicate.Stream did before the
	// simulation found the hole; see TestRegressionPositionBeforeFence.
	positionBeforeFence bool
	// unconditionalApply applies a batch wherever the sink stands, as a
	// DurableSink that is not a ConditionalSink does; see
	// TestRegressionRestartDuplicate.
	unconditionalApply bool
}

func (o Options) withDefaults() Options {
	if o.Members == 0 {
		o.Members = 3
	}
	if o.Lease.TTL == 0 {
		o.Lease.TTL = 2 * time.Second
	}
	if o.Lease.DriftMargin == 0 {
		o.Lease.DriftMargin = o.Lease.TTL / 10
	}
	if o.Lease.RenewInterval == 0 {
		o.Lease.RenewInterval = o.Lease.TTL / 3
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.HoldOff, time.Second)
	def(&o.SwitchDelay, 20*time.Millisecond)
	def(&o.StopTimeout, time.Second)
	def(&o.CheckInterval, 200*time.Millisecond)
	def(&o.MaxDelay, 30*time.Millisecond)
	def(&o.OpTimeout, 500*time.Millisecond)
	def(&o.BatchEvery, 50*time.Millisecond)
	def(&o.SourceEvery, 100*time.Millisecond)
	if o.MaxDrift == 0 {
		o.MaxDrift = 0.01
	}
	if o.Batch == 0 {
		o.Batch = 4
	}
	if o.CheckpointEvery == 0 {
		o.CheckpointEvery = 3
	}
	if o.SourceBatch == 0 {
		o.SourceBatch = 3
	}
	return o
}

// validate reports every rule o (with defaults filled in) breaks, joined;
// it changes nothing.
func (o Options) validate() error {
	var errs []error
	bad := func(field, rule string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(rule, args...)))
	}
	if o.MaxDrift < 0 || o.MaxDrift >= 0.5 {
		bad("MaxDrift", "must be in [0, 0.5), got %v", o.MaxDrift)
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"Members", o.Members}, {"Batch", o.Batch}, {"CheckpointEvery", o.CheckpointEvery}, {"SourceBatch", o.SourceBatch}} {
		if f.v < 1 {
			bad(f.name, "must be positive, got %d", f.v)
		}
	}
	for _, f := range []struct {
		name string
		d    time.Duration
	}{{"HoldOff", o.HoldOff}, {"SwitchDelay", o.SwitchDelay}, {"StopTimeout", o.StopTimeout}, {"CheckInterval", o.CheckInterval},
		{"MaxDelay", o.MaxDelay}, {"OpTimeout", o.OpTimeout}, {"BatchEvery", o.BatchEvery}, {"SourceEvery", o.SourceEvery}} {
		if f.d < 0 {
			bad(f.name, "must not be negative, got %v", f.d)
		}
	}
	return errors.Join(errs...)
}

// campaignRetry is the Machine's wait after a failed campaign, as ha.Node
// derives it from HoldOff (ha.Config.CampaignRetry's default).
func (o Options) campaignRetry() time.Duration {
	return min(o.HoldOff, time.Second)
}

// Bound is the liveness bound of guarantee 5 for these options: after the
// last fault heals, some member is active within
//
//	TTL                 a lease held by a crashed or frozen holder expires
//	+ RenewInterval     (its last renewal may predate the heal by up to this)
//	+ StopTimeout       a holder that lost its term finishes stopping its work
//	+ HoldOff + campaign retry   a member that stepped down or failed to
//	                    campaign waits before it campaigns again
//	+ 2 x SwitchDelay   demote of the old holder, promote of the new one
//	+ 6 x OpTimeout     the new run's first three calls, each possibly
//	                    lost once before the run is restarted
//	+ 2 x CheckInterval a cured member passing its health check twice
//
// with each member-measured duration stretched by 1/(1-MaxDrift).
func (o Options) Bound() time.Duration {
	o = o.withDefaults()
	local := o.StopTimeout + o.HoldOff + o.campaignRetry() + 2*o.SwitchDelay + 6*o.OpTimeout + 2*o.CheckInterval
	return o.Lease.TTL + o.Lease.RenewInterval + time.Duration(float64(local)/(1-o.MaxDrift))
}

// World is a simulated cluster: members running ha's decision machine,
// an in-process election, a fenced store and a durable sink behind a
// simulated network, and a growing source, all on one virtual clock and
// driven by one seed. A World is not safe for concurrent use; it runs
// in the goroutine that calls its methods, and the same seed, options
// and calls give the same history.
type World struct {
	seed   int64
	opts   Options
	rng    *rand.Rand
	clk    *clock.Fake
	start  time.Time
	policy func(id string) core.Policy

	election *memlease.Election
	store    storage.Store
	sink     *memrepl.DurableSink
	source   *memrepl.Source
	net      *network
	members  []*member

	mu     sync.Mutex // guards grants, appended by the election's OnChange
	grants []Grant

	hist     History
	seq      map[string]uint64
	values   int
	settling bool
	faults   int
	healed   time.Time
}

// ErrConfig is wrapped by the error NewWorld returns for inconsistent
// Options; each message reads "hatest: invalid config: Field: rule", one
// per broken rule.
var ErrConfig = errors.New("hatest: invalid config")

// ErrOptions is the old name of ErrConfig.
//
// Deprecated: use ErrConfig.
var ErrOptions = ErrConfig

// epoch is the virtual time at which every World begins.
var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Start returns the virtual time at which the World began (the same for
// every World), from which Schedule times count.
func (w *World) Start() time.Time { return w.start }

// NewWorld returns a World of opts.Members members, all started, at
// virtual time w.Start(). It fails, naming the field, if the options are
// inconsistent.
func NewWorld(seed int64, opts Options) (*World, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	w := &World{seed: seed, opts: opts, rng: rand.New(rand.NewSource(seed)), clk: clock.NewFake(epoch), start: epoch,
		sink: &memrepl.DurableSink{}, source: &memrepl.Source{}, seq: map[string]uint64{}}
	w.store = opts.Store
	if w.store == nil {
		w.store = memstore.New()
	}
	lo := opts.Lease
	lo.OnChange = func(l lease.Leader) {
		w.mu.Lock()
		w.grants = append(w.grants, Grant{Time: w.clk.Now(), Leader: l})
		w.mu.Unlock()
	}
	el, err := memlease.NewElection(w.clk, lo)
	if err != nil {
		return nil, fmt.Errorf("%w: Lease: %w", ErrConfig, err)
	}
	w.election = el
	w.net = &network{w: w, cuts: map[link]int{}, maxDelay: opts.MaxDelay}
	w.policy = func(id string) core.Policy {
		return core.Policy{ID: id, HoldOff: opts.HoldOff, CampaignRetry: opts.campaignRetry(),
			Checks:  []core.CheckPolicy{{Name: "sim", Rise: 2, Fall: 2}},
			Restart: core.RestartPolicy{Max: 3, Window: time.Minute, Backoff: 100 * time.Millisecond, MaxBackoff: time.Second}}
	}
	w.hist = History{CheckpointKey: "checkpoint", Durable: true, Paused: map[string][]Interval{}, Bound: opts.Bound()}
	for i := range opts.Members {
		rate := 1 + opts.MaxDrift*(2*w.rng.Float64()-1)
		w.members = append(w.members, &member{w: w, id: fmt.Sprintf("m%d", i), clk: newDrift(w.clk, rate)})
	}
	w.grow()
	for _, m := range w.members {
		m.boot()
	}
	w.settle()
	return w, nil
}

// grow appends SourceBatch records to the source every SourceEvery.
func (w *World) grow() {
	w.clk.AfterFunc(w.opts.SourceEvery, func() {
		data := make([][]byte, w.opts.SourceBatch)
		for i := range data {
			data[i] = fmt.Appendf(nil, "r%d", w.source.Len()+i+1)
		}
		w.source.Append(data...)
		w.grow()
	})
}

func (w *World) logf(format string, args ...any) {
	if w.opts.Log != nil {
		w.opts.Log(fmt.Sprintf(format, args...))
	}
}

// Seed returns the seed the World was made with.
func (w *World) Seed() int64 { return w.seed }

// Now returns the World's virtual time.
func (w *World) Now() time.Time { return w.clk.Now() }

// Members returns the members' IDs, in order.
func (w *World) Members() []string {
	ids := make([]string, len(w.members))
	for i, m := range w.members {
		ids[i] = m.id
	}
	return ids
}

// Active returns the ID of a running member (neither crashed nor frozen)
// whose Machine is in the active role, or "" if there is none; if there
// are several (which the checkers would report), the first. A frozen
// member may still believe it is active: that is what fencing is for.
func (w *World) Active() string {
	for _, m := range w.members {
		if !m.crashed && !m.paused && m.role == core.RoleActive {
			return m.id
		}
	}
	return ""
}

// Faults returns the number of faults injected so far.
func (w *World) Faults() int { return w.faults }

// settle lets every member react to what changed, until none has
// anything left to do.
func (w *World) settle() {
	if w.settling {
		return
	}
	w.settling = true
	defer func() { w.settling = false }()
	for again := true; again; {
		again = false
		for _, m := range w.members {
			if m.poll() {
				again = true
			}
		}
	}
}

// admitted records that the resource admitted the write of op i now.
func (w *World) admitted(i int, res string) {
	w.seq[res]++
	w.hist.Ops[i].Applied, w.hist.Ops[i].Seq = w.clk.Now(), w.seq[res]
}

// Run advances virtual time by d, letting every timer, message and member
// step run in order.
func (w *World) Run(d time.Duration) {
	end := w.clk.Now().Add(d)
	for {
		next, ok := w.clk.NextDeadline()
		if !ok || next.After(end) {
			w.clk.Set(end)
			w.settle()
			return
		}
		w.clk.Set(next)
		w.settle()
	}
}

// History returns a copy of what the World recorded so far, with the
// source and sink contents as of now, the time the last fault healed and
// the liveness bound of its options.
func (w *World) History() *History {
	h := w.hist
	h.Ops = append([]Op(nil), w.hist.Ops...)
	h.Runs = append([]Run(nil), w.hist.Runs...)
	h.Faults = append([]string(nil), w.hist.Faults...)
	h.Paused = map[string][]Interval{}
	for k, v := range w.hist.Paused {
		h.Paused[k] = append([]Interval(nil), v...)
	}
	w.mu.Lock()
	h.Grants = append([]Grant(nil), w.grants...)
	w.mu.Unlock()
	for _, r := range w.source.Records() {
		h.Source = append(h.Source, string(r.Data))
	}
	for _, r := range w.sink.Records() {
		h.Target = append(h.Target, string(r.Data))
	}
	h.Healed, h.End = w.healed, w.clk.Now()
	return &h
}

// Close stops every member's elector. The World must not be used after.
func (w *World) Close() {
	for _, m := range w.members {
		if m.camp != nil {
			m.camp.cancel()
			<-m.camp.done
		}
		if m.el != nil {
			_ = m.el.Close()
		}
	}
}

func (w *World) member(id string) *member {
	for _, m := range w.members {
		if m.id == id {
			return m
		}
	}
	return nil
}

// forward carries a switchover request to the member named leader.
func (w *World) forward(leader, to string) {
	m := w.member(leader)
	if m == nil {
		return
	}
	inc := m.inc
	w.clk.AfterFunc(w.net.delay(), func() {
		m.deliver(inc, func() { m.post(core.Command{ID: 1, Cmd: core.CmdSwitchover, To: to}) })
	})
}
