//go:build linux

package rfc2136

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/hakit/hakit/dns"
	"github.com/hakit/hakit/dns/switchertest"
	"github.com/hakit/hakit/fence"
)

var nameSeq atomic.Int64

// newName returns a record name no other test used, so that tests can
// share one server and still start from an empty RRset.
func newName() string { return fmt.Sprintf("r%d.%s", nameSeq.Add(1), testZone) }

func (k *knot) config(name, member string, targets ...string) Config {
	if len(targets) == 0 {
		targets = []string{"192.0.2.1"}
	}
	return Config{
		Server:  k.Addr,
		Zone:    k.Zone,
		Name:    name,
		Type:    "A",
		Targets: targets,
		Member:  member,
		KeyName: k.KeyName,
		Secret:  k.Secret,
		Timeout: 2 * time.Second,
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

// lookup queries the server directly, without TSIG, as a client would.
func (k *knot) lookup(t *testing.T, name string, typ uint16) []string {
	t.Helper()
	m := new(mdns.Msg)
	m.SetQuestion(name, typ)
	r, _, err := (&mdns.Client{Net: "tcp"}).Exchange(m, k.Addr)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, rr := range r.Answer {
		out = append(out, rdata(rr))
	}
	return out
}

func TestPromoteDemote(t *testing.T) {
	k := startKnot(t)
	tests := []struct {
		typ     string
		targets []string
		qtype   uint16
		want    []string
	}{
		{"A", []string{"192.0.2.10", "192.0.2.11"}, mdns.TypeA, []string{"192.0.2.10", "192.0.2.11"}},
		{"AAAA", []string{"2001:db8::10"}, mdns.TypeAAAA, []string{"2001:db8::10"}},
		{"CNAME", []string{"db-2.hakit.test"}, mdns.TypeCNAME, []string{"db-2.hakit.test."}},
	}
	for _, tt := range tests {
		t.Run(tt.typ, func(t *testing.T) {
			name := newName()
			cfg := k.config(name, "db-2", tt.targets...)
			cfg.Type = tt.typ
			s := mustNew(t, cfg)
			ctx := t.Context()
			if err := s.Promote(ctx, 5); err != nil {
				t.Fatal(err)
			}
			got := k.lookup(t, name, tt.qtype)
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("%s %s = %q, want %q", name, tt.typ, got, tt.want)
			}
			if got := k.lookup(t, "_hakit."+name, mdns.TypeTXT); len(got) != 1 || got[0] != `"hakit-token=5" "member=db-2"` {
				t.Fatalf("token record = %q", got)
			}
			if err := s.Demote(ctx, 5); err != nil {
				t.Fatal(err)
			}
			if got := k.lookup(t, name, tt.qtype); len(got) != 0 {
				t.Fatalf("after demote %s = %q, want nothing", name, got)
			}
			// The token record stays as the fence.
			if got := k.lookup(t, "_hakit."+name, mdns.TypeTXT); len(got) != 1 || got[0] != `"hakit-token=5" "member=db-2"` {
				t.Fatalf("after demote token record = %q, want it kept", got)
			}
		})
	}
}

func TestTakeoverAndStale(t *testing.T) {
	k := startKnot(t)
	name := newName()
	a := mustNew(t, k.config(name, "a", "192.0.2.1"))
	b := mustNew(t, k.config(name, "b", "192.0.2.2"))
	ctx := t.Context()
	if err := a.Promote(ctx, 10); err != nil {
		t.Fatal(err)
	}
	if err := b.Promote(ctx, 11); err != nil {
		t.Fatal(err)
	}
	if got := k.lookup(t, name, mdns.TypeA); len(got) != 1 || got[0] != "192.0.2.2" {
		t.Fatalf("after b's takeover A = %q", got)
	}
	// a wakes up from a long pause and retries its promote and demote.
	err := a.Promote(ctx, 10)
	var se *fence.StaleError
	if !errors.As(err, &se) || se.Token != 10 || se.High != 11 || !dns.IsPermanent(err) {
		t.Fatalf("stale promote: err = %v, want a permanent fence.StaleError 10 < 11", err)
	}
	if !strings.Contains(err.Error(), name) {
		t.Errorf("stale error %q does not name the record", err)
	}
	if err := a.Demote(ctx, 10); !errors.Is(err, fence.ErrStale) {
		t.Fatalf("stale demote: err = %v, want fence.ErrStale", err)
	}
	if got := k.lookup(t, name, mdns.TypeA); len(got) != 1 || got[0] != "192.0.2.2" {
		t.Fatalf("after stale calls A = %q, want b's address", got)
	}
	// Retry must not retry a stale refusal.
	calls := 0
	counting := switcherFunc(func(ctx context.Context, tok fence.Token) error { calls++; return a.Promote(ctx, tok) })
	if err := mustRetry(t, counting, dns.DefaultRetryPolicy()).Promote(ctx, 10); !errors.Is(err, fence.ErrStale) || calls != 1 {
		t.Fatalf("retried stale promote: err = %v after %d calls", err, calls)
	}
}

type switcherFunc func(context.Context, fence.Token) error

func (f switcherFunc) Promote(ctx context.Context, t fence.Token) error { return f(ctx, t) }
func (f switcherFunc) Demote(ctx context.Context, t fence.Token) error  { return f(ctx, t) }

func TestRaceLost(t *testing.T) {
	k := startKnot(t)
	t.Run("to a newer term is stale", func(t *testing.T) {
		name := newName()
		old := mustNew(t, k.config(name, "old", "192.0.2.1"))
		cur := mustNew(t, k.config(name, "new", "192.0.2.2"))
		// old reads an empty token record, then new promotes before
		// old's update arrives.
		old.afterRead = func() {
			if err := cur.Promote(t.Context(), 8); err != nil {
				t.Error(err)
			}
		}
		err := old.Promote(t.Context(), 7)
		if !errors.Is(err, fence.ErrStale) || !strings.Contains(err.Error(), "lost the race") {
			t.Fatalf("err = %v, want a stale race loss", err)
		}
		if tok, member, active, err := cur.Observe(t.Context()); err != nil || tok != 8 || member != "new" || !active {
			t.Fatalf("Observe = %d %q %v %v, want token 8 of new", tok, member, active, err)
		}
	})
	t.Run("to an older term is a conflict that a retry resolves", func(t *testing.T) {
		name := newName()
		slow := mustNew(t, k.config(name, "slow", "192.0.2.1"))
		fresh := mustNew(t, k.config(name, "fresh", "192.0.2.2"))
		once := sync.Once{}
		fresh.afterRead = func() {
			once.Do(func() {
				if err := slow.Promote(t.Context(), 3); err != nil {
					t.Error(err)
				}
			})
		}
		err := fresh.Promote(t.Context(), 4)
		if !errors.Is(err, ErrConflict) || errors.Is(err, fence.ErrStale) || dns.IsPermanent(err) {
			t.Fatalf("err = %v, want a transient ErrConflict", err)
		}
		if err := mustRetry(t, fresh, dns.RetryPolicy{Attempts: 3, Initial: time.Millisecond, Max: time.Millisecond, Multiplier: 1}).Promote(t.Context(), 4); err != nil {
			t.Fatalf("retry: %v", err)
		}
		if tok, member, _, err := fresh.Observe(t.Context()); err != nil || tok != 4 || member != "fresh" {
			t.Fatalf("Observe = %d %q %v, want token 4 of fresh", tok, member, err)
		}
	})
	t.Run("demote by an old term after takeover removes nothing", func(t *testing.T) {
		name := newName()
		old := mustNew(t, k.config(name, "old", "192.0.2.1"))
		cur := mustNew(t, k.config(name, "new", "192.0.2.2"))
		if err := old.Promote(t.Context(), 1); err != nil {
			t.Fatal(err)
		}
		old.afterRead = func() {
			if err := cur.Promote(t.Context(), 2); err != nil {
				t.Error(err)
			}
		}
		if err := old.Demote(t.Context(), 1); !errors.Is(err, fence.ErrStale) {
			t.Fatalf("err = %v, want stale", err)
		}
		if got := k.lookup(t, name, mdns.TypeA); len(got) != 1 || got[0] != "192.0.2.2" {
			t.Fatalf("A = %q, want the new member's", got)
		}
	})
}

func TestConcurrentMembers(t *testing.T) {
	k := startKnot(t)
	for round := range 5 {
		name := newName()
		low := fence.Token(2*round + 1)
		high := low + 1
		a := mustRetry(t, mustNew(t, k.config(name, "a", "192.0.2.1")), dns.RetryPolicy{Attempts: 5, Initial: time.Millisecond, Max: 10 * time.Millisecond, Multiplier: 2})
		b := mustRetry(t, mustNew(t, k.config(name, "b", "192.0.2.2")), dns.RetryPolicy{Attempts: 5, Initial: time.Millisecond, Max: 10 * time.Millisecond, Multiplier: 2})
		var wg sync.WaitGroup
		var errA, errB error
		wg.Go(func() { errA = a.Promote(t.Context(), low) })
		wg.Go(func() { errB = b.Promote(t.Context(), high) })
		wg.Wait()
		if errB != nil {
			t.Fatalf("round %d: newer term's promote failed: %v", round, errB)
		}
		if errA != nil && !errors.Is(errA, fence.ErrStale) {
			t.Fatalf("round %d: older term's promote: %v, want nil or stale", round, errA)
		}
		if got := k.lookup(t, name, mdns.TypeA); len(got) != 1 || got[0] != "192.0.2.2" {
			t.Fatalf("round %d: A = %q, want the newer term's address", round, got)
		}
	}
}

func TestWrongKeyRejected(t *testing.T) {
	k := startKnot(t)
	tests := []struct {
		name    string
		edit    func(*Config)
		wantMsg string
	}{
		{"wrong secret", func(c *Config) { c.Secret = otherSecret }, "BADSIG"},
		{"unknown key name", func(c *Config) { c.KeyName = "nobody." }, "BADKEY"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := newName()
			cfg := k.config(name, "a")
			tt.edit(&cfg)
			s := mustNew(t, cfg)
			err := s.Promote(t.Context(), 1)
			if !errors.Is(err, ErrAuth) || !dns.IsPermanent(err) {
				t.Fatalf("err = %v, want a permanent ErrAuth", err)
			}
			for _, want := range []string{tt.wantMsg, cfg.KeyName, k.Addr} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
			if strings.Contains(err.Error(), cfg.Secret) {
				t.Errorf("error %q leaks the secret", err)
			}
			if got := k.lookup(t, name, mdns.TypeA); len(got) != 0 {
				t.Fatalf("A = %q after a rejected key", got)
			}
		})
	}
}

func TestMalformedTokenRecord(t *testing.T) {
	k := startKnot(t)
	name := newName()
	rr, err := mdns.NewRR(`_hakit.` + name + ` 60 IN TXT "hakit-token=banana" "member=x"`)
	if err != nil {
		t.Fatal(err)
	}
	k.rawUpdate(t, t.Context(), rr)
	s := mustNew(t, k.config(name, "a"))
	err = s.Promote(t.Context(), 9)
	if !errors.Is(err, ErrMalformed) || !dns.IsPermanent(err) || !strings.Contains(err.Error(), "banana") {
		t.Fatalf("err = %v, want a permanent ErrMalformed naming the bad value", err)
	}
	if got := k.lookup(t, name, mdns.TypeA); len(got) != 0 {
		t.Fatalf("A = %q; a malformed token must not count as no token", got)
	}
}

func TestUnreachableServer(t *testing.T) {
	k := startKnot(t)
	s := mustNew(t, func() Config { c := k.config(newName(), "a"); c.Timeout = 200 * time.Millisecond; return c }())
	resume := k.pause(t)
	defer resume()
	err := s.Promote(t.Context(), 1)
	if !errors.Is(err, ErrTimeout) || dns.IsPermanent(err) {
		t.Fatalf("err = %v, want a transient ErrTimeout", err)
	}
	// Cancel while the exchange waits for the paused server (or before;
	// either way the call must end with the context's error, long
	// before its one-minute Timeout).
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(20*time.Millisecond, cancel)
	s2 := mustNew(t, func() Config { c := k.config(newName(), "a"); c.Timeout = time.Minute; return c }())
	start := time.Now()
	err = s2.Promote(ctx, 1)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("cancelled promote took %v", d)
	}
}

func TestConformance(t *testing.T) {
	k := startKnot(t)
	switchertest.Run(t, switchertest.Harness{
		Fence: switchertest.FenceShared,
		New: func(t *testing.T) switchertest.Backend {
			name := newName()
			probe := mustNew(t, k.config(name, "probe"))
			return switchertest.Backend{
				Switcher: func(t *testing.T, member string) dns.Switcher {
					c := k.config(name, member)
					return mustNew(t, c)
				},
				Observe: func(ctx context.Context) (bool, fence.Token, error) {
					tok, _, active, err := probe.Observe(ctx)
					return active, tok, err
				},
				Break: func(t *testing.T) func() { return k.pause(t) },
			}
		},
	})
}

func TestConfigValidate(t *testing.T) {
	ok := Config{Server: "127.0.0.1:53", Zone: "example.com", Name: "db.example.com", Type: "A",
		Targets: []string{"192.0.2.1"}, Member: "m", KeyName: "k", Secret: testSecret}
	if _, err := New(ok); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		want string
		edit func(*Config)
	}{
		{"Server", func(c *Config) { c.Server = "nohost" }},
		{"Net", func(c *Config) { c.Net = "sctp" }},
		{"Zone", func(c *Config) { c.Zone = "" }},
		{"not in Zone", func(c *Config) { c.Name = "db.example.org" }},
		{"TokenName", func(c *Config) { c.TokenName = "x.example.org" }},
		{"TokenName", func(c *Config) { c.TokenName = "db.example.com." }},
		{"Type", func(c *Config) { c.Type = "MX" }},
		{"Targets", func(c *Config) { c.Targets = nil }},
		{"IPv4", func(c *Config) { c.Targets = []string{"2001:db8::1"} }},
		{"IPv6", func(c *Config) { c.Type = "AAAA" }},
		{"exactly one", func(c *Config) { c.Type = "CNAME"; c.Targets = []string{"a.", "b."} }},
		{"Member", func(c *Config) { c.Member = "has space" }},
		{"KeyName", func(c *Config) { c.KeyName = "" }},
		{"Secret", func(c *Config) { c.Secret = "" }},
		{"Secret: is not valid base64", func(c *Config) { c.Secret = "not base64!" }},
		{"Algorithm", func(c *Config) { c.Algorithm = "hmac-md4" }},
		{"Timeout", func(c *Config) { c.Timeout = -time.Second }},
	}
	for _, tt := range tests {
		c := ok
		c.Targets = append([]string(nil), ok.Targets...)
		tt.edit(&c)
		_, err := New(c)
		if !errors.Is(err, ErrConfig) || !errors.Is(err, dns.ErrConfig) || !strings.Contains(err.Error(), tt.want) ||
			!strings.HasPrefix(err.Error(), "rfc2136: invalid config: ") {
			t.Errorf("err = %v, want an ErrConfig (and dns.ErrConfig) mentioning %q", err, tt.want)
		}
	}
	// Every broken rule is reported, and the caller's Config is left
	// as it was.
	c := ok
	c.Targets = []string{"db.example.com"}
	c.Server, c.Zone, c.Secret, c.Timeout = "nohost", "", "", -time.Second
	before := c.Targets[0]
	_, err := New(c)
	for _, field := range []string{"Server", "Zone", "Targets[0]", "Secret", "Timeout"} {
		if err == nil || !strings.Contains(err.Error(), "rfc2136: invalid config: "+field+": ") {
			t.Errorf("New with five broken fields: %v; want it to name %s", err, field)
		}
	}
	if c.Targets[0] != before {
		t.Errorf("New changed the caller's Targets: %q", c.Targets[0])
	}
}

func TestOverUDP(t *testing.T) {
	k := startKnot(t)
	name := newName()
	cfg := k.config(name, "a", "192.0.2.9")
	cfg.Net = "udp"
	s := mustNew(t, cfg)
	if err := s.Promote(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	if got := k.lookup(t, name, mdns.TypeA); len(got) != 1 || got[0] != "192.0.2.9" {
		t.Fatalf("A = %q", got)
	}
	if err := s.Demote(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
}

func TestZoneNotServed(t *testing.T) {
	k := startKnot(t)
	cfg := k.config("db.elsewhere.test.", "a")
	cfg.Zone = "elsewhere.test."
	err := mustNew(t, cfg).Promote(t.Context(), 1)
	if !errors.Is(err, ErrRefused) || !dns.IsPermanent(err) || !strings.Contains(err.Error(), "REFUSED") {
		t.Fatalf("err = %v, want a permanent ErrRefused naming the rcode", err)
	}
}

// An answer truncated to fit a UDP datagram (TC set) does not hold the
// whole RRset; it must not be read as the RRset. Here Name's A RRset is
// too big for 512 bytes, so a Demote over UDP that took the truncated
// answer for "no records" would report success and leave the records in
// place.
func TestTruncatedAnswerOverUDP(t *testing.T) {
	k := startKnot(t)
	name := newName()
	var targets []string
	for i := range 60 {
		targets = append(targets, fmt.Sprintf("192.0.2.%d", i+1))
	}
	cfg := k.config(name, "a", targets...)
	if err := mustNew(t, cfg).Promote(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	cfg.Net = "udp"
	err := mustNew(t, cfg).Demote(t.Context(), 1)
	if got := k.lookup(t, name, mdns.TypeA); err == nil && len(got) != 0 {
		t.Fatalf("Demote over UDP returned nil, but %s still has %d A records", name, len(got))
	}
	if err != nil && (!errors.Is(err, ErrServer) || dns.IsPermanent(err)) {
		t.Fatalf("Demote over UDP = %v, want a transient ErrServer or success", err)
	}
}

// A call waiting for another call of the same Switcher to finish stops
// waiting when its own context ends: here a Promote is held up between its
// read and its update (as by a slow server), and a Demote with a short
// deadline must not wait for it.
func TestQueuedCallHonoursContext(t *testing.T) {
	k := startKnot(t)
	s := mustNew(t, k.config(newName(), "a"))
	inside, release := make(chan struct{}), make(chan struct{})
	s.afterRead = func() {
		close(inside)
		<-release
	}
	promoted := make(chan error, 1)
	go func() { promoted <- s.Promote(t.Context(), 1) }()
	<-inside
	defer func() {
		close(release)
		if err := <-promoted; err != nil {
			t.Errorf("Promote: %v", err)
		}
	}()
	dctx, dcancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer dcancel()
	demoted := make(chan error, 1)
	go func() { demoted <- s.Demote(dctx, 1) }()
	select {
	case err := <-demoted:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Demote behind a held-up Promote = %v, want context.DeadlineExceeded", err)
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
