package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/lease/raftlease"
)

// DemoOptions shape a demo run. The zero value of a field takes the
// default in parentheses.
type DemoOptions struct {
	Members       int           // members of the Raft group (3)
	Rate          int           // records appended to the source per second (4000)
	Steady        time.Duration // replication time between the acts (2s)
	Tick          time.Duration // Raft tick (raftlease's default, 100ms)
	ElectionTicks int           // Raft election timeout in ticks (raftlease's default, 10)
	Timeout       time.Duration // limit of each wait (20s)
	Dir           string        // working directory (a new temporary one, removed after)
	Out           io.Writer     // the story and the summary (io.Discard)
	Terminal      bool          // Out is a terminal: redraw the progress line in place
	Logger        *slog.Logger  // the members' logs (discarded)
}

func (o *DemoOptions) withDefaults() {
	if o.Members == 0 {
		o.Members = 3
	}
	if o.Rate == 0 {
		o.Rate = 4000
	}
	if o.Steady == 0 {
		o.Steady = 2 * time.Second
	}
	if o.Tick == 0 {
		o.Tick = raftlease.DefaultTickInterval
	}
	if o.ElectionTicks == 0 {
		o.ElectionTicks = raftlease.DefaultElectionTicks
	}
	if o.Timeout == 0 {
		o.Timeout = 20 * time.Second
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// DemoResult is what a demo run measured and verified.
type DemoResult struct {
	Members       []string
	Terms         []termInfo    // every active term, in order
	Killed        string        // the member killed
	Failover      time.Duration // kill -> the successor's first acknowledged batch
	Elected       time.Duration // kill -> the successor active
	Switchover    time.Duration // request -> the named member's first acknowledged batch
	SwitchTo      string        // the member switched over to
	Paused        string        // the member paused mid-write
	PauseFailover time.Duration // pause -> the successor's first acknowledged batch
	Fenced        refusal       // the paused member's held write, refused
	Source        int           // records in the source
	Target        int           // records in the target
	Lost          int           // source records missing from the target
	Duplicated    int           // target records beyond the first copy of each
	Equal         bool          // the target holds exactly the source's records, in order
}

// ErrDemoCheck is returned when the target does not equal the source.
var ErrDemoCheck = errors.New("hamirror demo: target differs from source")

// cmdDemo runs the demo from the command line.
func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hamirror demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o DemoOptions
	fs.IntVar(&o.Rate, "rate", 4000, "records per second appended to the source")
	fs.DurationVar(&o.Steady, "steady", 2*time.Second, "replication time between the acts")
	verbose := fs.Bool("v", false, "print the members' logs (text) on standard error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	o.Out = stdout
	if f, ok := stdout.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			o.Terminal = true
		}
	}
	if *verbose {
		o.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	res, err := RunDemo(ctx, o)
	if res != nil {
		printSummary(stdout, res)
	}
	return err
}

// RunDemo starts a cluster of members in this process on loopback, each
// wired like the daemon on the embedded Raft backend, feeds a change
// stream into a file log and replicates it to a file sink. It kills the
// active member without resigning, restarts it, switches over to it, stops
// everything gracefully and compares the target with the source. It
// returns ErrDemoCheck (with the result) if they differ.
func RunDemo(ctx context.Context, o DemoOptions) (*DemoResult, error) {
	o.withDefaults()
	dir := o.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "hamirror-demo-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	tok := make([]byte, 16)
	_, _ = rand.Read(tok)
	c := &demoCluster{
		opts: o, dir: dir, sourceDir: filepath.Join(dir, "source"), sinkPath: filepath.Join(dir, "target.log"),
		peers: map[string]string{}, apis: map[string]string{}, firstApply: map[fence.Token]time.Time{},
		changed: make(chan struct{}), logger: o.Logger, start: time.Now(),
		admin: &adminClient{http: &http.Client{Timeout: 10 * time.Second}, token: hex.EncodeToString(tok)},
		out:   &demoPrinter{w: o.Out, terminal: o.Terminal},
	}
	res := &DemoResult{}
	ids := make([]string, o.Members)
	for i := range ids {
		ids[i] = string(rune('a' + i))
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		c.peers[ids[i]] = addr
	}
	res.Members = ids
	c.out.line("hamirror demo: %d members in this process on loopback, embedded Raft (tick %s, election timeout %s),",
		o.Members, o.Tick, time.Duration(o.ElectionTicks)*o.Tick)
	c.out.line("file log -> transactional file sink, checkpoints in the Raft group's fenced store")

	gen, err := startGenerator(c)
	if err != nil {
		return nil, err
	}
	defer gen.stop()
	members := map[string]*demoMember{}
	defer func() { // on an early return: stop whatever still runs
		for _, m := range members {
			m.stop()
			_ = m.wait(context.Background())
		}
	}()
	for _, id := range ids {
		m, err := c.startMember(id)
		if err != nil {
			return nil, err
		}
		members[id] = m
		c.out.line("  member %s  raft %s  api %s", id, m.raftAddr, m.api)
	}
	stopProgress := make(chan struct{})
	progressDone := make(chan struct{})
	go func() { c.runProgress(stopProgress); close(progressDone) }()
	defer func() {
		select {
		case <-stopProgress:
		default:
			close(stopProgress)
		}
		<-progressDone
	}()

	// Every act starts from whoever is active at that moment: on a busy
	// machine an election may also happen on its own, and the story
	// prints it when it does.
	defer func() {
		c.mu.Lock()
		res.Terms = slices.Clone(c.terms)
		c.mu.Unlock()
	}()

	// Act 1: an election, then replication.
	if _, err := c.waitActiveApplying(ctx, 0, ""); err != nil {
		return res, err
	}
	if err := sleepCtx(ctx, o.Steady); err != nil {
		return res, err
	}

	// Act 2: kill -9 the active member.
	first, err := c.waitActiveApplying(ctx, 0, "")
	if err != nil {
		return res, err
	}
	victim := members[first.ID]
	killedAt := time.Now()
	victim.crash()
	c.out.event(c.since(killedAt), "kill -9 %s: its Raft transport and sink vanish, no resignation", first.ID)
	next, err := c.waitActiveApplying(ctx, first.Token, "")
	if err != nil {
		return res, err
	}
	applied, _ := c.firstApplyOf(next.Token)
	res.Killed, res.Elected, res.Failover = first.ID, next.At.Sub(killedAt), applied.Sub(killedAt)
	c.out.event(c.since(applied), "failover: %s active after %s, first record applied %s after the kill",
		next.ID, ms(res.Elected), ms(res.Failover))

	// Act 3: the killed member restarts from its data directory and
	// rejoins as a standby.
	waitCtx, cancel := context.WithTimeout(ctx, o.Timeout)
	_ = victim.wait(waitCtx) // it ran on in the background, cut off
	cancel()
	delete(members, first.ID)
	m, err := c.startMember(first.ID)
	if err != nil {
		return res, err
	}
	members[first.ID] = m
	c.out.event(c.since(time.Now()), "%s restarted from its data directory (api %s), rejoins as standby", first.ID, m.api)
	if err := sleepCtx(ctx, o.Steady/2); err != nil {
		return res, err
	}

	// Act 4: switchover to the restarted member (or, should it have won
	// an election meanwhile, away from it), requested through a third
	// member's API, which forwards it to the active member.
	if _, err := c.switchoverAct(ctx, ids, first.ID, res); err != nil {
		return res, err
	}
	if err := sleepCtx(ctx, o.Steady/2); err != nil {
		return res, err
	}

	// Act 5: the active member pauses in the middle of a write, as in a
	// long GC pause; a successor takes over; when the paused member runs
	// again its held write goes out under its old token, and is refused.
	final, err := c.pauseAct(ctx, members, res)
	if err != nil {
		return res, err
	}
	if err := sleepCtx(ctx, o.Steady/2); err != nil {
		return res, err
	}

	// Act 6: the source stops; wait for the target to catch up, then
	// stop every member gracefully (drain, final checkpoint, resign).
	srcPos, err := gen.stop()
	if err != nil {
		return res, err
	}
	c.out.event(c.since(time.Now()), "source closed at %d records; waiting for the target", c.generated.Load())
	if err := c.waitCaughtUp(ctx, members[final.ID], srcPos); err != nil {
		return res, err
	}
	for _, m := range members {
		m.stop()
	}
	for id, m := range members {
		if err := m.wait(context.Background()); err != nil {
			c.out.line("member %s stopped with: %v", id, err)
		}
		delete(members, id)
	}
	close(stopProgress)
	<-progressDone
	c.out.event(c.since(time.Now()), "every member stopped gracefully")

	if err := verify(ctx, c, int(c.generated.Load()), res); err != nil {
		return res, err
	}
	if !res.Equal {
		return res, ErrDemoCheck
	}
	return res, nil
}

// switchoverAct asks for a switchover to member to (or to another member
// if to is active already) through a member that is neither, retrying
// while the active member is busy with a transition, and waits until the
// named member applies records. It returns the new term.
func (c *demoCluster) switchoverAct(ctx context.Context, ids []string, to string, res *DemoResult) (termInfo, error) {
	cur, err := c.waitActiveApplying(ctx, 0, "")
	if err != nil {
		return termInfo{}, err
	}
	if cur.ID == to {
		to = ids[slices.IndexFunc(ids, func(id string) bool { return id != cur.ID })]
	}
	via := cur.ID
	if i := slices.IndexFunc(ids, func(id string) bool { return id != cur.ID && id != to }); i >= 0 {
		via = ids[i]
	}
	api, _ := c.apiOf(via)
	switchAt := time.Now()
	c.out.event(c.since(switchAt), "operator: POST /switchover?to=%s sent to %s", to, via)
	reqCtx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	if err := postRetryBusy(reqCtx, c.admin, api, "switchover", to); err != nil {
		return termInfo{}, err
	}
	last, err := c.waitActiveApplying(ctx, cur.Token, to)
	if err != nil {
		return termInfo{}, err
	}
	applied, _ := c.firstApplyOf(last.Token)
	res.SwitchTo, res.Switchover = to, applied.Sub(switchAt)
	c.out.event(c.since(applied), "switchover: %s active, first record applied %s after the request", last.ID, ms(res.Switchover))
	return last, nil
}

// pauseAct freezes the active member m until a successor applies
// records, then thaws it and waits for its held write to be refused with
// a stale token. It returns the successor's term.
func (c *demoCluster) pauseAct(ctx context.Context, members map[string]*demoMember, res *DemoResult) (termInfo, error) {
	cur, err := c.waitActiveApplying(ctx, 0, "")
	if err != nil {
		return termInfo{}, err
	}
	m := members[cur.ID]
	hw, ok := m.freeze(c.opts.Timeout)
	if !ok {
		return termInfo{}, fmt.Errorf("hamirror demo: active member %s attempted no write to pause in", m.id)
	}
	pausedAt := time.Now()
	c.out.event(c.since(pausedAt), "%s paused mid-write (a long GC pause, SIGSTOP): silent to the group, its write held", m.id)
	next, err := c.waitActiveApplying(ctx, cur.Token, "")
	if err != nil {
		m.thaw()
		return termInfo{}, err
	}
	applied, _ := c.firstApplyOf(next.Token)
	c.out.event(c.since(applied), "takeover: %s active, first record applied %s after the pause", next.ID, ms(applied.Sub(pausedAt)))
	m.thaw()
	wakeCtx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	var ref refusal
	for {
		var ok bool
		_, changed := c.snapshot()
		if ref, ok = c.refusedBy(m.id, hw.Token); ok {
			break
		}
		select {
		case <-changed:
		case <-wakeCtx.Done():
			return termInfo{}, fmt.Errorf("hamirror demo: the held write of %s under token %d was not refused: %w", m.id, hw.Token, wakeCtx.Err())
		}
	}
	what := fmt.Sprintf("write of %d records", ref.Records)
	if ref.Records == 0 {
		what = "heartbeat write"
	}
	c.out.event(c.since(time.Now()), "%s resumed: its held %s under token %d was refused: %v", m.id, what, ref.Token, ref.Err)
	if !errors.Is(ref.Err, fence.ErrStale) {
		return termInfo{}, fmt.Errorf("hamirror demo: the held write of %s failed, but not as stale: %w", m.id, ref.Err)
	}
	res.Paused, res.PauseFailover, res.Fenced = m.id, applied.Sub(pausedAt), ref
	return next, nil
}

// waitActiveApplying waits until a member with a token above after is
// active (it must be member want, if set) and has had a batch
// acknowledged.
func (c *demoCluster) waitActiveApplying(ctx context.Context, after fence.Token, want string) (termInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	for {
		a, changed := c.snapshot()
		if a.Token > after && (want == "" || a.ID == want) {
			if _, ok := c.firstApplyOf(a.Token); ok {
				return a, nil
			}
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return termInfo{}, fmt.Errorf("hamirror demo: no member became active after term %d and applied a record (want %q): %w", after, want, ctx.Err())
		}
	}
}

// waitCaughtUp polls the active member's sink until its committed
// position is the source's end.
func (c *demoCluster) waitCaughtUp(ctx context.Context, m *demoMember, end []byte) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		pos, err := m.sink.Position(ctx)
		if err == nil && string(pos) == string(end) {
			return nil
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return fmt.Errorf("hamirror demo: target did not catch up with the source: %w", ctx.Err())
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
