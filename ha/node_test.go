package ha_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/ha"
	"github.com/hakit/hakit/lease"
	"github.com/hakit/hakit/lease/clock"
	"github.com/hakit/hakit/lease/memlease"
	"github.com/hakit/hakit/storage/memstore"
	"github.com/prometheus/client_golang/prometheus"
)

// cluster runs Nodes over one memlease election on a fake clock that a
// driver goroutine moves forward at about five times real time. Tests wait
// for states by polling with a real-time deadline.
type cluster struct {
	t     *testing.T
	clk   *clock.Fake
	el    *memlease.Election
	nodes map[string]*member

	mu   sync.Mutex
	runs []workRun // every work run, in start order
}

type workRun struct {
	id         string
	token      fence.Token
	start, end time.Time // virtual
}

type member struct {
	id      string
	node    *ha.Node
	cancel  context.CancelFunc
	done    chan error
	healthy atomic.Bool
	fail    atomic.Int32 // work runs that fail at once
	events  chan ha.Event
}

func newCluster(t *testing.T, opts memlease.Options) *cluster {
	t.Helper()
	clk := clock.NewFake(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	if opts.TTL == 0 {
		opts.TTL, opts.DriftMargin = time.Second, 300*time.Millisecond
	}
	el, err := memlease.NewElection(clk, opts)
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, clk: clk, el: el, nodes: map[string]*member{}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				clk.Advance(5 * time.Millisecond)
			case <-stop:
				return
			}
		}
	}()
	t.Cleanup(func() {
		for _, m := range c.nodes {
			m.stop(t)
		}
		close(stop)
		wg.Wait()
	})
	return c
}

// add starts a Node whose first failRuns work runs fail at once; edit
// adjusts its Config before New.
func (c *cluster) add(id string, edit func(*ha.Config), failRuns ...int32) *member {
	c.t.Helper()
	return c.addAt(id, "", edit, failRuns...)
}

func (c *cluster) addAt(id, addr string, edit func(*ha.Config), failRuns ...int32) *member {
	c.t.Helper()
	el, err := c.el.Member(id, addr)
	if err != nil {
		c.t.Fatal(err)
	}
	m := &member{id: id, done: make(chan error, 1), events: make(chan ha.Event, 1024)}
	m.healthy.Store(true)
	for _, n := range failRuns {
		m.fail.Store(n)
	}
	cfg := ha.Config{
		ID:      id,
		Elector: el,
		Clock:   c.clk,
		HoldOff: 2 * time.Second,
		Checks: []ha.Check{{Name: "test", Interval: 100 * time.Millisecond, Rise: 1, Fall: 2, Func: func(context.Context) error {
			if m.healthy.Load() {
				return nil
			}
			return errors.New("unhealthy by test")
		}}},
		Work:       c.work(m),
		OnEvent:    func(ev ha.Event) { m.events <- ev },
		AdminToken: "secret",
	}
	if edit != nil {
		edit(&cfg)
	}
	n, err := ha.New(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	m.node = n
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go func() { m.done <- n.Run(ctx) }()
	c.nodes[id] = m
	return m
}

func (c *cluster) work(m *member) ha.WorkFunc {
	return func(ctx context.Context, term lease.Term) error {
		t := term.Token()
		c.mu.Lock()
		i := len(c.runs)
		c.runs = append(c.runs, workRun{id: m.id, token: t, start: c.clk.Now()})
		c.mu.Unlock()
		if m.fail.Load() > 0 {
			m.fail.Add(-1)
			c.mu.Lock()
			c.runs[i].end = c.clk.Now()
			c.mu.Unlock()
			return errors.New("work failed by test")
		}
		<-ctx.Done()
		c.mu.Lock()
		c.runs[i].end = c.clk.Now()
		c.mu.Unlock()
		return nil
	}
}

func (m *member) stop(t *testing.T) {
	t.Helper()
	if m.cancel == nil {
		return
	}
	m.cancel()
	m.cancel = nil
	select {
	case err := <-m.done:
		if err != nil {
			t.Errorf("%s: Run: %v", m.id, err)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("%s: Run did not return after its context ended", m.id)
	}
}

// eventually polls cond until it holds, failing the test after a deadline.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// activeOne waits until exactly one member is active and returns it.
func (c *cluster) activeOne() *member {
	c.t.Helper()
	var got *member
	eventually(c.t, "one active member", func() bool {
		got = nil
		for _, m := range c.nodes {
			if m.cancel != nil && m.node.Status().Role == ha.RoleActive {
				if got != nil {
					return false
				}
				got = m
			}
		}
		return got != nil
	})
	return got
}

// checkRuns asserts that no two work runs overlapped in virtual time and
// that tokens never went down from one run to the next.
func (c *cluster) checkRuns() {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := 1; i < len(c.runs); i++ {
		prev, cur := c.runs[i-1], c.runs[i]
		if cur.token < prev.token {
			c.t.Errorf("run %d of %s has token %d after token %d", i, cur.id, cur.token, prev.token)
		}
		if cur.id != prev.id && (prev.end.IsZero() || prev.end.After(cur.start)) {
			c.t.Errorf("run %d of %s (token %d) started at %v while %s (token %d) ran until %v",
				i, cur.id, cur.token, cur.start, prev.id, prev.token, prev.end)
		}
	}
}

func TestNodeFailoverOnIsolation(t *testing.T) {
	c := newCluster(t, memlease.Options{})
	for _, id := range []string{"a", "b", "c"} {
		c.add(id, nil)
	}
	first := c.activeOne()
	tok := first.node.Status().Token
	if err := c.el.Isolate(first.id); err != nil {
		t.Fatal(err)
	}
	var next *member
	eventually(t, "a successor", func() bool {
		next = c.activeOne()
		return next != first
	})
	if got := next.node.Status().Token; got <= tok {
		t.Fatalf("successor token %d, want > %d", got, tok)
	}
	eventually(t, "the isolated member to stand by", func() bool {
		return first.node.Status().Role != ha.RoleActive
	})
	c.checkRuns()
}

func TestNodeStepsDownWhenUnhealthyAndHoldsOff(t *testing.T) {
	c := newCluster(t, memlease.Options{})
	a := c.add("a", nil)
	c.activeOne()
	b := c.add("b", nil)
	a.healthy.Store(false)
	eventually(t, "b active", func() bool { return b.node.Status().Role == ha.RoleActive })
	st := a.node.Status()
	if st.Role != ha.RoleStandby || st.Healthy {
		t.Fatalf("a: %+v, want an unhealthy standby", st)
	}
	if !strings.Contains(st.LastErr, "unhealthy by test") {
		t.Fatalf("a's last error %q does not say why", st.LastErr)
	}
	c.checkRuns()
}

func TestNodeRestartsWorkInPlace(t *testing.T) {
	c := newCluster(t, memlease.Options{})
	a := c.add("a", func(cfg *ha.Config) {
		cfg.Restart = ha.RestartPolicy{Max: 2, Window: time.Hour, Backoff: 50 * time.Millisecond, MaxBackoff: time.Second}
	}, 2) // the first two runs fail
	c.activeOne()
	eventually(t, "a third run", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.runs) == 3
	})
	st := a.node.Status()
	if st.Role != ha.RoleActive || st.Restarts != 2 {
		t.Fatalf("after two restarts: %+v", st)
	}
	c.mu.Lock()
	for i, r := range c.runs {
		if r.token != st.Token {
			t.Errorf("run %d has token %d, want %d: a restart keeps the term", i, r.token, st.Token)
		}
	}
	c.mu.Unlock()
}

func TestNodeStepsDownWhenRestartsRunOut(t *testing.T) {
	c := newCluster(t, memlease.Options{})
	a := c.add("a", func(cfg *ha.Config) {
		cfg.Restart = ha.RestartPolicy{Max: 1, Window: time.Hour, Backoff: 50 * time.Millisecond, MaxBackoff: time.Second}
	}, 100)
	eventually(t, "a's first run", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.runs) > 0
	})
	b := c.add("b", nil)
	eventually(t, "b active", func() bool { return b.node.Status().Role == ha.RoleActive })
	st := a.node.Status()
	if !strings.Contains(st.LastErr, "work failed by test") {
		t.Fatalf("a's last error %q does not say why it stepped down", st.LastErr)
	}
	c.checkRuns()
}

func TestNodeCleanStopHandsOver(t *testing.T) {
	c := newCluster(t, memlease.Options{})
	a := c.add("a", nil)
	c.activeOne()
	b := c.add("b", nil)
	a.stop(t)
	if got := a.node.Status().Role; got != ha.RoleStopped {
		t.Fatalf("a's role after Run returned: %v", got)
	}
	eventually(t, "b active", func() bool { return b.node.Status().Role == ha.RoleActive })
	c.checkRuns()
}

func TestNodeSwitchoverToAny(t *testing.T) {
	c := newCluster(t, memlease.Options{})
	a := c.add("a", nil)
	c.activeOne()
	b := c.add("b", nil)
	eventually(t, "b campaigning", func() bool { return b.node.Status().Role == ha.RoleCampaigning })
	if err := a.node.Switchover(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b active", func() bool { return b.node.Status().Role == ha.RoleActive })
	c.checkRuns()
}

func TestNodePauseKeepsActiveWhenUnhealthy(t *testing.T) {
	c := newCluster(t, memlease.Options{})
	a := c.add("a", nil)
	c.activeOne()
	b := c.add("b", nil)
	ctx := context.Background()
	if err := a.node.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.node.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	a.healthy.Store(false)
	eventually(t, "a seen unhealthy", func() bool { return !a.node.Status().Healthy })
	if st := a.node.Status(); st.Role != ha.RoleActive || !st.Paused {
		t.Fatalf("paused a: %+v", st)
	}
	if err := a.node.Switchover(ctx, ""); !errors.Is(err, ha.ErrPaused) {
		t.Fatalf("Switchover while paused: %v, want ErrPaused", err)
	}
	if err := b.node.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.node.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b active after resume", func() bool { return b.node.Status().Role == ha.RoleActive })
	c.checkRuns()
}

func TestNodeApproval(t *testing.T) {
	c := newCluster(t, memlease.Options{})
	a := c.add("a", func(cfg *ha.Config) { cfg.RequireApproval = true })
	eventually(t, "a healthy", func() bool { return a.node.Status().Healthy })
	if st := a.node.Status(); st.Role != ha.RoleStandby || st.Approval != "required" {
		t.Fatalf("before approval: %+v", st)
	}
	if err := a.node.Approve(context.Background()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a active", func() bool { return a.node.Status().Role == ha.RoleActive })
}

func TestNodeHandler(t *testing.T) {
	c := newCluster(t, memlease.Options{})
	var srvB *httptest.Server
	a := c.add("a", nil)
	c.activeOne()
	srvA := httptest.NewServer(a.node.Handler())
	t.Cleanup(srvA.Close)
	// b advertises its admin address; a switchover asked of a is for b.
	srvB = httptest.NewUnstartedServer(nil)
	b := c.addAt("b", "", nil)
	srvB.Config.Handler = b.node.Handler()
	srvB.Start()
	t.Cleanup(srvB.Close)

	get := func(srv *httptest.Server, path string) int {
		t.Helper()
		resp, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	post := func(srv *httptest.Server, path, token string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, srv.URL+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		srv  *httptest.Server
		path string
		want int
	}{
		{srvA, "/health", 200}, {srvA, "/primary", 200}, {srvA, "/standby", 503}, {srvA, "/status", 200},
		{srvB, "/health", 200}, {srvB, "/primary", 503}, {srvB, "/standby", 200},
	} {
		if got := get(tc.srv, tc.path); got != tc.want {
			t.Errorf("GET %s on %s: %d, want %d", tc.path, tc.srv.URL, got, tc.want)
		}
	}
	for _, path := range []string{"/switchover", "/pause", "/resume", "/approve"} {
		if got := post(srvA, path, ""); got != http.StatusUnauthorized {
			t.Errorf("POST %s without a token: %d, want 401", path, got)
		}
		if got := post(srvA, path, "wrong"); got != http.StatusUnauthorized {
			t.Errorf("POST %s with a wrong token: %d, want 401", path, got)
		}
	}
	if a.node.Status().Role != ha.RoleActive || a.node.Status().Paused {
		t.Fatal("an unauthorized request changed the node")
	}
	if got := post(srvA, "/pause", "secret"); got != http.StatusNoContent {
		t.Fatalf("POST /pause: %d", got)
	}
	if !a.node.Status().Paused {
		t.Fatal("pause did not take")
	}
	if got := post(srvA, "/resume", "secret"); got != http.StatusNoContent {
		t.Fatalf("POST /resume: %d", got)
	}
	if got := post(srvA, "/approve", "secret"); got != http.StatusConflict {
		t.Fatalf("POST /approve on a member that needs none: %d, want 409", got)
	}
	if got := post(srvA, "/switchover", "secret"); got != http.StatusNoContent {
		t.Fatalf("POST /switchover: %d", got)
	}
	eventually(t, "b active", func() bool { return b.node.Status().Role == ha.RoleActive })
}

func TestNodeSwitchoverForwardedFromStandby(t *testing.T) {
	c := newCluster(t, memlease.Options{})
	// a advertises the address of its own admin handler.
	srvA := httptest.NewUnstartedServer(nil)
	a := c.addAt("a", "http://"+srvA.Listener.Addr().String(), nil)
	srvA.Config.Handler = a.node.Handler()
	srvA.Start()
	t.Cleanup(srvA.Close)
	c.activeOne()
	b := c.add("b", nil)
	eventually(t, "b sees a lead", func() bool { return b.node.Status().Leader.ID == "a" })
	if err := b.node.Switchover(context.Background(), ""); err != nil {
		t.Fatalf("forwarded switchover: %v", err)
	}
	eventually(t, "b active", func() bool { return b.node.Status().Role == ha.RoleActive })
	c.checkRuns()
}

func TestNodeEventsAndMetrics(t *testing.T) {
	c := newCluster(t, memlease.Options{})
	reg := prometheus.NewRegistry()
	a := c.add("a", func(cfg *ha.Config) { cfg.Registerer = reg })
	c.activeOne()
	var roles []string
	for len(roles) == 0 || roles[len(roles)-1] != "active" {
		ev := <-a.events
		if ev.Kind == ha.EventRole {
			roles = append(roles, ev.Role.String())
			if ev.Role == ha.RoleActive && ev.Token == 0 {
				t.Fatal("active event without a token")
			}
		}
	}
	if got := strings.Join(roles, ">"); got != "campaigning>promoting>active" {
		t.Fatalf("role events %s", got)
	}
	if v := gauge(t, reg, "hakit_token"); v != float64(a.node.Status().Token) {
		t.Fatalf("hakit_token = %v", v)
	}
	if _, err := ha.New(ha.Config{ID: "a", Elector: nil}); !errors.Is(err, ha.ErrConfig) {
		t.Fatalf("New without an Elector: %v", err)
	}
}

// gauge reads the single value of a gauge from reg.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

func TestConfigValidation(t *testing.T) {
	el, _ := memlease.NewElection(clock.Real(), memlease.Options{})
	e, _ := el.Member("x", "")
	work := ha.TokenWork(func(context.Context, fence.Token) error { return nil })
	for _, tc := range []struct {
		cfg   ha.Config
		field string
	}{
		{ha.Config{Elector: e, Work: work}, "ID"},
		{ha.Config{ID: "x", Work: work}, "Elector"},
		{ha.Config{ID: "x", Elector: e}, "Work"},
		{ha.Config{ID: "x", Elector: e, Work: work, HoldOff: -1}, "HoldOff"},
		{ha.Config{ID: "x", Elector: e, Work: work, Restart: ha.RestartPolicy{Backoff: 2 * time.Second, MaxBackoff: time.Second}}, "Restart.MaxBackoff"},
		{ha.Config{ID: "x", Elector: e, Work: work, Checks: []ha.Check{{Name: "c"}}}, "Checks[0].Func"},
		{ha.Config{ID: "x", Elector: e, Work: work, Checks: []ha.Check{{Name: "c", Func: okCheck}, {Name: "c", Func: okCheck}}}, "Checks[1].Name"},
		{ha.Config{ID: "x", Elector: e, Work: work, SharedKey: "bad\x00key"}, "SharedKey"},
	} {
		_, err := ha.New(tc.cfg)
		if !errors.Is(err, ha.ErrConfig) || !strings.Contains(err.Error(), "ha: invalid config: "+tc.field+": ") {
			t.Errorf("New(%s wrong): %v, want ErrConfig naming %s", tc.field, err, tc.field)
		}
	}
}

func okCheck(context.Context) error { return nil }

// Defaults are filled in before validation: a Backoff alone (MaxBackoff
// left to its default) is valid, as is a Backoff above the default
// MaxBackoff. Every broken rule is reported, not only the first. The
// caller's Checks are not changed.
func TestConfigDefaultsThenValidation(t *testing.T) {
	el, _ := memlease.NewElection(clock.Real(), memlease.Options{})
	e, _ := el.Member("x", "")
	work := ha.TokenWork(func(context.Context, fence.Token) error { return nil })
	for _, r := range []ha.RestartPolicy{{Backoff: 200 * time.Millisecond}, {Backoff: 10 * time.Second}} {
		if _, err := ha.New(ha.Config{ID: "x", Elector: e, Work: work, Restart: r}); err != nil {
			t.Errorf("New with Restart %+v: %v", r, err)
		}
	}
	checks := []ha.Check{{Name: "c", Func: okCheck}}
	if _, err := ha.New(ha.Config{ID: "x", Elector: e, Work: work, Checks: checks}); err != nil {
		t.Fatal(err)
	}
	if checks[0].Interval != 0 || checks[0].Rise != 0 {
		t.Errorf("New filled in the caller's Checks: %+v", checks[0])
	}
	_, err := ha.New(ha.Config{HoldOff: -1, StopTimeout: -1, Checks: []ha.Check{{Fall: -1}}})
	for _, field := range []string{"ID", "Elector", "Work", "HoldOff", "StopTimeout", "Checks[0].Name", "Checks[0].Func", "Checks[0].Fall"} {
		if err == nil || !strings.Contains(err.Error(), "ha: invalid config: "+field+": ") {
			t.Errorf("New with many broken fields: %v; want it to name %s", err, field)
		}
	}
}

func TestNodeSharedMaintenance(t *testing.T) {
	c := newCluster(t, memlease.Options{})
	shared := memstore.New()
	withShared := func(cfg *ha.Config) { cfg.Shared, cfg.SharedPoll = shared, 100*time.Millisecond }
	srvA := httptest.NewUnstartedServer(nil)
	a := c.addAt("a", "http://"+srvA.Listener.Addr().String(), withShared)
	srvA.Config.Handler = a.node.Handler()
	srvA.Start()
	t.Cleanup(srvA.Close)
	c.activeOne()
	b := c.add("b", withShared)
	eventually(t, "b sees a lead", func() bool { return b.node.Status().Leader.ID == "a" })

	// Pause asked of the standby is forwarded to the active member, which
	// stores it for the cluster.
	ctx := context.Background()
	if err := b.node.Pause(ctx); err != nil {
		t.Fatalf("pause via standby: %v", err)
	}
	eventually(t, "both paused", func() bool { return a.node.Status().Paused && b.node.Status().Paused })

	// The active member dies during maintenance: nobody takes over.
	if err := c.el.Isolate("a"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a's term to end", func() bool { return a.node.Status().Role != ha.RoleActive })
	until := c.clk.Now().Add(5 * time.Second) // five TTLs of virtual time
	eventually(t, "virtual time to pass", func() bool { return !c.clk.Now().Before(until) })
	if st := b.node.Status(); st.Role == ha.RoleActive || st.Role == ha.RoleCampaigning {
		t.Fatalf("b took over during maintenance: %+v", st)
	}

	// Resume on b with nobody leading: b campaigns, leads, and clears the
	// flag for everyone.
	if err := b.node.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b active", func() bool { return b.node.Status().Role == ha.RoleActive })
	if err := c.el.Heal("a"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a resumed from the shared flag", func() bool { return !a.node.Status().Paused })
	it, err := shared.Get(ctx, ha.DefaultSharedKey)
	if err != nil || string(it.Value) != "running" {
		t.Fatalf("shared flag %q, %v", it.Value, err)
	}
	c.checkRuns()
}

func TestNodeSwitchoverToNamedMember(t *testing.T) {
	c := newCluster(t, memlease.Options{})
	a := c.add("a", nil)
	c.activeOne()
	b := c.add("b", nil)
	eventually(t, "b campaigning", func() bool { return b.node.Status().Role == ha.RoleCampaigning })
	cm := c.add("c", nil)
	eventually(t, "c campaigning", func() bool { return cm.node.Status().Role == ha.RoleCampaigning })
	// b waits longer than c, so only a transfer makes c the successor.
	if err := a.node.Switchover(context.Background(), "c"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "c active", func() bool { return cm.node.Status().Role == ha.RoleActive })
	if b.node.Status().Role == ha.RoleActive {
		t.Fatal("b became active")
	}
	c.checkRuns()
}
