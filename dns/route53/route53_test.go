package route53

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/hakit/hakit/dns"
	"github.com/hakit/hakit/dns/switchertest"
	"github.com/hakit/hakit/fence"
)

const testZoneID = "Z0HAKITTEST"

var nameSeq atomic.Int64

func newName() string { return fmt.Sprintf("r%d.example.com.", nameSeq.Add(1)) }

func testConfig(client API, name, member string, targets ...string) Config {
	if len(targets) == 0 {
		targets = []string{"192.0.2.1"}
	}
	return Config{
		Client:       client,
		HostedZoneID: testZoneID,
		Name:         name,
		Type:         "A",
		Targets:      targets,
		Member:       member,
		PollInitial:  time.Millisecond,
		PollMax:      4 * time.Millisecond,
	}
}

func mustNew(t *testing.T, cfg Config) *Switcher {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func values(s xmlRRSet) []string {
	var out []string
	if s.ResourceRecords != nil {
		for _, r := range s.ResourceRecords.Records {
			out = append(out, r.Value)
		}
	}
	return out
}

func TestPromoteDemote(t *testing.T) {
	f, client := newFakeRoute53(t, testZoneID)
	f.insyncAfter = 3
	name := newName()
	s := mustNew(t, testConfig(client, name, "db-1", "192.0.2.7", "192.0.2.8"))
	if err := s.Promote(t.Context(), 4); err != nil {
		t.Fatal(err)
	}
	rec, ok := f.get(name, "A", "")
	if !ok || strings.Join(values(rec), ",") != "192.0.2.7,192.0.2.8" || aws.ToInt64(rec.TTL) != 30 {
		t.Fatalf("A record = %+v, %v", rec, ok)
	}
	tok, ok := f.get("_hakit."+name, "TXT", "")
	if !ok || strings.Join(values(tok), ",") != `"hakit-token=4" "member=db-1"` {
		t.Fatalf("token record = %+v, %v", tok, ok)
	}
	if f.polls != 4 {
		t.Errorf("GetChange polls = %d, want 4 (3 PENDING, then INSYNC)", f.polls)
	}
	// The first promote, with no token record, must CREATE it (so that a
	// concurrent first promote fails) and UPSERT the record.
	if got := actions(f.batches[0]); got != "CREATE TXT,UPSERT A" {
		t.Errorf("first batch = %s", got)
	}
	if err := s.Promote(t.Context(), 4); err != nil {
		t.Fatal(err)
	}
	if len(f.batches) != 1 {
		t.Errorf("idempotent promote sent %d batches, want none", len(f.batches)-1)
	}
	if err := s.Promote(t.Context(), 5); err != nil {
		t.Fatal(err)
	}
	if got := actions(f.batches[1]); got != "DELETE TXT,CREATE TXT,UPSERT A" {
		t.Errorf("second batch = %s", got)
	}
	if err := s.Demote(t.Context(), 5); err != nil {
		t.Fatal(err)
	}
	// The demote is conditional on the token record, which it keeps.
	if got := actions(f.batches[2]); got != "DELETE TXT,CREATE TXT,DELETE A" {
		t.Errorf("demote batch = %s", got)
	}
	if _, ok := f.get(name, "A", ""); ok {
		t.Fatal("A record left after demote")
	}
	if tok, ok := f.get("_hakit."+name, "TXT", ""); !ok || strings.Join(values(tok), ",") != `"hakit-token=5" "member=db-1"` {
		t.Fatalf("token record after demote = %+v, %v; want it kept", tok, ok)
	}
	if err := s.Demote(t.Context(), 5); err != nil || len(f.batches) != 3 {
		t.Fatalf("second demote: %v, %d batches; want a no-op", err, len(f.batches))
	}
}

func actions(cs []xmlChange) string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Action+" "+c.Set.Type)
	}
	return strings.Join(out, ",")
}

func TestFailoverRecord(t *testing.T) {
	f, client := newFakeRoute53(t, testZoneID)
	name := newName()
	mk := func(member, role, ip string) *Switcher {
		cfg := testConfig(client, name, member, ip)
		cfg.Failover, cfg.SetIdentifier, cfg.HealthCheckID = role, member, "hc-"+member
		cfg.TokenName = "_hakit-" + strings.ToLower(role) + "." + name
		return mustNew(t, cfg)
	}
	primary, secondary := mk("east", "PRIMARY", "192.0.2.1"), mk("west", "SECONDARY", "192.0.2.2")
	if err := primary.Promote(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	if err := secondary.Promote(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct{ id, failover, ip string }{{"east", "PRIMARY", "192.0.2.1"}, {"west", "SECONDARY", "192.0.2.2"}} {
		rec, ok := f.get(name, "A", want.id)
		if !ok || rec.Failover != want.failover || rec.HealthCheckID != "hc-"+want.id || strings.Join(values(rec), "") != want.ip {
			t.Fatalf("record %s = %+v, %v", want.id, rec, ok)
		}
	}
	if err := secondary.Demote(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.get(name, "A", "west"); ok {
		t.Fatal("secondary record left after demote")
	}
	if _, ok := f.get(name, "A", "east"); !ok {
		t.Fatal("demote of the secondary removed the primary")
	}
}

func TestStale(t *testing.T) {
	_, client := newFakeRoute53(t, testZoneID)
	name := newName()
	a := mustNew(t, testConfig(client, name, "a", "192.0.2.1"))
	b := mustNew(t, testConfig(client, name, "b", "192.0.2.2"))
	if err := a.Promote(t.Context(), 10); err != nil {
		t.Fatal(err)
	}
	if err := b.Promote(t.Context(), 11); err != nil {
		t.Fatal(err)
	}
	err := a.Promote(t.Context(), 10)
	var se *fence.StaleError
	if !errors.As(err, &se) || se.Token != 10 || se.High != 11 || !dns.IsPermanent(err) {
		t.Fatalf("err = %v, want a permanent stale error 10 < 11", err)
	}
	if err := a.Demote(t.Context(), 10); !errors.Is(err, fence.ErrStale) {
		t.Fatalf("demote: err = %v, want stale", err)
	}
	if tok, member, active, err := b.Observe(t.Context()); err != nil || tok != 11 || member != "b" || !active {
		t.Fatalf("Observe = %d %q %v %v", tok, member, active, err)
	}
}

func TestRaceLost(t *testing.T) {
	tests := []struct {
		name        string
		first       bool // the interloper promotes into an empty zone
		mine, their fence.Token
		wantStale   bool
	}{
		{"first promote loses to newer", true, 7, 8, true},
		{"takeover loses to newer", false, 7, 8, true},
		{"first promote races older", true, 8, 7, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, client := newFakeRoute53(t, testZoneID)
			name := newName()
			me := mustNew(t, testConfig(client, name, "me", "192.0.2.1"))
			other := mustNew(t, testConfig(client, name, "other", "192.0.2.2"))
			if !tt.first {
				if err := other.Promote(t.Context(), 1); err != nil {
					t.Fatal(err)
				}
			}
			fired := false
			me.afterRead = func() {
				if fired {
					return
				}
				fired = true
				if err := other.Promote(t.Context(), tt.their); err != nil {
					t.Error(err)
				}
			}
			err := me.Promote(t.Context(), tt.mine)
			if tt.wantStale {
				if !errors.Is(err, fence.ErrStale) || !strings.Contains(err.Error(), "lost the race") {
					t.Fatalf("err = %v, want a stale race loss", err)
				}
			} else {
				if !errors.Is(err, ErrConflict) || dns.IsPermanent(err) || !strings.Contains(err.Error(), "already exists") {
					t.Fatalf("err = %v, want a transient ErrConflict quoting Route 53", err)
				}
				if err := mustRetry(t, me, dns.RetryPolicy{Attempts: 2, Initial: time.Millisecond, Max: time.Millisecond, Multiplier: 1}).Promote(t.Context(), tt.mine); err != nil {
					t.Fatalf("retry: %v", err)
				}
			}
			want := max(tt.mine, tt.their)
			if tok, _, _, err := me.Observe(t.Context()); err != nil || tok != want {
				t.Fatalf("token = %d (%v), want %d", tok, err, want)
			}
			_ = f
		})
	}
}

func TestMalformedTokenRecord(t *testing.T) {
	f, client := newFakeRoute53(t, testZoneID)
	name := newName()
	f.put(xmlRRSet{Name: "_hakit." + name, Type: "TXT", TTL: aws.Int64(30), ResourceRecords: &xmlRecords{Records: []xmlRecord{{Value: `"hakit-token=" "member=a"`}}}})
	s := mustNew(t, testConfig(client, name, "a"))
	err := s.Promote(t.Context(), 3)
	if !errors.Is(err, ErrMalformed) || !dns.IsPermanent(err) {
		t.Fatalf("err = %v, want a permanent ErrMalformed", err)
	}
	if _, ok := f.get(name, "A", ""); ok {
		t.Fatal("promoted over a malformed token record")
	}
}

func TestErrorClasses(t *testing.T) {
	tests := []struct {
		code      string
		want      error
		permanent bool
	}{
		{"AccessDenied", ErrRejected, true},
		{"InvalidInput", ErrRejected, true},
		{"Throttling", ErrService, false},
		{"PriorRequestNotComplete", ErrService, false},
		{"ServiceUnavailable", ErrService, false},
	}
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			f, client := newFakeRoute53(t, testZoneID)
			s := mustNew(t, testConfig(client, newName(), "a"))
			f.setFail(tt.code)
			err := s.Promote(t.Context(), 1)
			if !errors.Is(err, tt.want) || dns.IsPermanent(err) != tt.permanent || !strings.Contains(err.Error(), tt.code) {
				t.Fatalf("err = %v, want %v (permanent %v) naming %s", err, tt.want, tt.permanent, tt.code)
			}
		})
	}
	t.Run("no such zone", func(t *testing.T) {
		_, client := newFakeRoute53(t, testZoneID)
		cfg := testConfig(client, newName(), "a")
		cfg.HostedZoneID = "ZNOPE"
		err := mustNew(t, cfg).Promote(t.Context(), 1)
		if !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), "ZNOPE") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestWaitHonoursContext(t *testing.T) {
	f, client := newFakeRoute53(t, testZoneID)
	f.insyncAfter = 1 << 30 // never INSYNC
	s := mustNew(t, testConfig(client, newName(), "a"))
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	err := s.Promote(ctx, 1)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "INSYNC") {
		t.Fatalf("err = %v, want a deadline while waiting for INSYNC", err)
	}
	// A retry finds the records in place and waits for the same change.
	f.mu.Lock()
	for id := range f.changes {
		f.changes[id] = 0
	}
	f.mu.Unlock()
	before := len(f.batches)
	if err := s.Promote(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	if len(f.batches) != before {
		t.Fatalf("retry sent another batch")
	}
}

func TestConformance(t *testing.T) {
	switchertest.Run(t, switchertest.Harness{
		Fence: switchertest.FenceShared,
		New: func(t *testing.T) switchertest.Backend {
			f, client := newFakeRoute53(t, testZoneID)
			name := newName()
			probe := mustNew(t, testConfig(client, name, "probe"))
			return switchertest.Backend{
				Switcher: func(t *testing.T, member string) dns.Switcher {
					return mustNew(t, testConfig(client, name, member))
				},
				Observe: func(ctx context.Context) (bool, fence.Token, error) {
					tok, _, active, err := probe.Observe(ctx)
					return active, tok, err
				},
				Break: func(t *testing.T) func() {
					f.setFail("ServiceUnavailable")
					return func() { f.setFail("") }
				},
			}
		},
	})
}

func TestConfigValidate(t *testing.T) {
	_, client := newFakeRoute53(t, testZoneID)
	ok := testConfig(client, "db.example.com", "m")
	if _, err := New(ok); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		want string
		edit func(*Config)
	}{
		{"Client", func(c *Config) { c.Client = nil }},
		{"HostedZoneID", func(c *Config) { c.HostedZoneID = "" }},
		{"Name", func(c *Config) { c.Name = "" }},
		{"TokenName", func(c *Config) { c.TokenName = "DB.example.com" }},
		{"Type", func(c *Config) { c.Type = "MX" }},
		{"Targets", func(c *Config) { c.Targets = nil }},
		{"IPv4", func(c *Config) { c.Targets = []string{"::1"} }},
		{"exactly one", func(c *Config) { c.Type = "CNAME"; c.Targets = []string{"a", "b"} }},
		{"TTL", func(c *Config) { c.TTL = -1 }},
		{"Member", func(c *Config) { c.Member = `a"b` }},
		{"needs a SetIdentifier", func(c *Config) { c.Failover = "PRIMARY" }},
		{"needs Failover", func(c *Config) { c.SetIdentifier = "x" }},
		{"PRIMARY or SECONDARY", func(c *Config) { c.Failover = "TERTIARY"; c.SetIdentifier = "x" }},
		{"PollMax", func(c *Config) { c.PollMax = time.Microsecond }},
	}
	for _, tt := range tests {
		c := ok
		c.Targets = append([]string(nil), ok.Targets...)
		tt.edit(&c)
		_, err := New(c)
		if !errors.Is(err, ErrConfig) || !errors.Is(err, dns.ErrConfig) || !strings.Contains(err.Error(), tt.want) ||
			!strings.HasPrefix(err.Error(), "route53: invalid config: ") {
			t.Errorf("err = %v, want an ErrConfig (and dns.ErrConfig) mentioning %q", err, tt.want)
		}
	}
	// Every broken rule is reported.
	c := ok
	c.Client, c.HostedZoneID, c.TTL, c.Failover = nil, "", -1, "TERTIARY"
	_, err := New(c)
	for _, field := range []string{"Client", "HostedZoneID", "TTL", "Failover"} {
		if err == nil || !strings.Contains(err.Error(), "route53: invalid config: "+field+": ") {
			t.Errorf("New with four broken fields: %v; want it to name %s", err, field)
		}
	}
}

func TestDemoteRaceLost(t *testing.T) {
	f, client := newFakeRoute53(t, testZoneID)
	name := newName()
	old := mustNew(t, testConfig(client, name, "old", "192.0.2.1"))
	cur := mustNew(t, testConfig(client, name, "new", "192.0.2.2"))
	if err := old.Promote(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	// The new member takes over between the old one's read and its batch.
	old.afterRead = func() {
		if err := cur.Promote(t.Context(), 2); err != nil {
			t.Error(err)
		}
	}
	if err := old.Demote(t.Context(), 1); !errors.Is(err, fence.ErrStale) || !strings.Contains(err.Error(), "lost the race") {
		t.Fatalf("err = %v, want a stale race loss", err)
	}
	if rec, ok := f.get(name, "A", ""); !ok || strings.Join(values(rec), "") != "192.0.2.2" {
		t.Fatalf("A = %+v, %v; want the new member's", rec, ok)
	}
}

// A call waiting for another call of the same Switcher to finish stops
// waiting when its own context ends: here a Promote waits for an INSYNC
// that never comes, and a Demote with a short deadline must not wait for
// it.
func TestQueuedCallHonoursContext(t *testing.T) {
	f, client := newFakeRoute53(t, testZoneID)
	f.insyncAfter = 1 << 30 // never INSYNC
	s := mustNew(t, testConfig(client, newName(), "a"))
	pctx, pcancel := context.WithCancel(t.Context())
	promoted := make(chan error, 1)
	go func() { promoted <- s.Promote(pctx, 1) }()
	defer func() {
		pcancel()
		<-promoted
	}()
	// Wait (with a deadline) until the Promote is polling for INSYNC.
	deadline := time.Now().Add(10 * time.Second)
	for {
		f.mu.Lock()
		polls := f.polls
		f.mu.Unlock()
		if polls > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Promote never started waiting for INSYNC")
		}
		time.Sleep(time.Millisecond) // polling the fake with a deadline
	}
	dctx, dcancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer dcancel()
	demoted := make(chan error, 1)
	go func() { demoted <- s.Demote(dctx, 1) }()
	select {
	case err := <-demoted:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Demote behind a stuck Promote = %v, want context.DeadlineExceeded", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Demote still waiting for the Promote 10s after its context ended")
	}
}

// mustRetry is dns.Retry for a policy the test knows to be valid.
func mustRetry(t testing.TB, s dns.Switcher, p dns.RetryPolicy) dns.Switcher {
	t.Helper()
	r, err := dns.Retry(s, p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
