package ha_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hakit/hakit/dns"
	"github.com/hakit/hakit/ha"
	"github.com/hakit/hakit/lease"
	"github.com/hakit/hakit/lease/clock"
	"github.com/hakit/hakit/lease/memlease"
)

// frozenRig is one Node on a memlease election whose fake clock moves only
// when the test moves it, so that the test decides what runs when.
type frozenRig struct {
	clk    *clock.Fake
	el     *memlease.Election
	node   *ha.Node
	health *dns.Health
	term   chan lease.Term // the work's term, once
	stuck  chan struct{}   // OnEvent has blocked the loop
	free   chan struct{}   // close to let the loop go on
	done   chan error
}

func newFrozenRig(t *testing.T) *frozenRig {
	t.Helper()
	clk := clock.NewFake(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	el, err := memlease.NewElection(clk, memlease.Options{TTL: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	e, err := el.Member("a", "")
	if err != nil {
		t.Fatal(err)
	}
	r := &frozenRig{clk: clk, el: el, health: &dns.Health{Now: clk.Now}, term: make(chan lease.Term, 1),
		stuck: make(chan struct{}), free: make(chan struct{}), done: make(chan error, 1)}
	r.node, err = ha.New(ha.Config{
		ID: "a", Elector: e, Clock: clk, Switcher: r.health,
		Work: func(ctx context.Context, term lease.Term) error {
			select {
			case r.term <- term:
			default:
			}
			<-ctx.Done()
			return nil
		},
		// The loop runs OnEvent; blocking it on the maintenance event
		// stands for a loop that does not get to run.
		OnEvent: func(ev ha.Event) {
			if ev.Kind == ha.EventPaused {
				close(r.stuck)
				<-r.free
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { r.done <- r.node.Run(ctx) }()
	t.Cleanup(func() {
		select {
		case <-r.free:
		default:
			close(r.free)
		}
		_ = el.Resume("a")
		cancel()
		// Let the Node's stop timers run on the fake clock.
		for {
			select {
			case <-r.done:
				return
			case <-time.After(time.Millisecond):
				clk.Advance(100 * time.Millisecond)
			}
		}
	})
	eventually(t, "a active", func() bool { return r.node.Status().Role == ha.RoleActive })
	return r
}

func (r *frozenRig) get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Body.String()
}

// A member frozen past its term's deadline must say "not primary" on the
// first request after it wakes, even though its loop has not run since:
// the answer is decided from the term's deadline at that moment. The loop
// is held in OnEvent; the elector is frozen (memlease Pause), so Done
// stays open, as in a process stopped with SIGSTOP.
func TestAnswersAfterAFrozenLoopComeFromTheDeadline(t *testing.T) {
	r := newFrozenRig(t)
	term := <-r.term
	h := r.node.Handler()
	if code, _ := r.get(t, h, "/primary"); code != http.StatusOK {
		t.Fatalf("/primary while active: %d", code)
	}

	go func() { _ = r.node.Pause(context.Background()) }()
	<-r.stuck
	if err := r.el.Pause("a"); err != nil {
		t.Fatal(err)
	}
	r.clk.Set(term.Deadline())
	select {
	case <-term.Done():
		t.Fatal("Done closed while the member was frozen; the test needs it open")
	default:
	}

	if code, body := r.get(t, h, "/primary"); code != http.StatusServiceUnavailable {
		t.Errorf("first /primary after the deadline passed: %d %q, want 503", code, body)
	}
	if code, _ := r.get(t, h, "/standby"); code != http.StatusOK {
		t.Errorf("/standby after the deadline passed: %d, want 200", code)
	}
	if st := r.node.Status(); st.Role != ha.RoleDemoting || !st.Since.Equal(term.Deadline()) {
		t.Errorf("Status after the deadline passed: role %v since %v, want demoting since %v", st.Role, st.Since, term.Deadline())
	}
	if code, _ := r.get(t, r.health, "/lb"); code != http.StatusServiceUnavailable {
		t.Errorf("dns.Health after the deadline passed: %d, want 503", code)
	}
	_, body := r.get(t, h, "/status")
	var st struct{ Role string }
	if err := json.Unmarshal([]byte(body), &st); err != nil || st.Role != "demoting" {
		t.Errorf("/status after the deadline passed: %s (%v), want role demoting", body, err)
	}

	// A tick before the deadline it was still primary: the answer moves
	// with the clock, not with the loop.
	close(r.free)
	if err := r.el.Resume("a"); err != nil {
		t.Fatal(err)
	}
	<-term.Done()
	eventually(t, "a to leave the active role", func() bool { return r.node.Status().Role != ha.RoleActive })
}

// /status uses one key style throughout, the leader included.
func TestStatusJSONKeys(t *testing.T) {
	r := newFrozenRig(t)
	eventually(t, "a to observe itself as leader", func() bool { return r.node.Status().Leader.ID == "a" })
	_, body := r.get(t, r.node.Handler(), "/status")
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("/status %q: %v", body, err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	var leader map[string]json.RawMessage
	if err := json.Unmarshal(m["leader"], &leader); err != nil {
		t.Fatalf("leader %s: %v", m["leader"], err)
	}
	for k := range leader {
		keys = append(keys, "leader."+k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if k != strings.ToLower(k) {
			t.Errorf("/status key %q is not lower case: %s", k, body)
		}
	}
	for _, want := range []string{"id", "role", "token", "leader", "leader.id", "leader.token", "since", "healthy"} {
		if !slices.Contains(keys, want) {
			t.Errorf("/status has no key %q: %s", want, body)
		}
	}
}

// The default Forward sends the admin token only over https or to a
// loopback address; to anything else it refuses, naming the setting, and
// sends nothing.
func TestDefaultForwardGuardsTheToken(t *testing.T) {
	var hits int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits++
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	loopback := srv.URL // http://127.0.0.1:port

	for _, tc := range []struct {
		addr, token string
		refused     bool
		want        string
	}{
		{"http://192.0.2.10:8080", "secret", true, "https"},
		{"192.0.2.10:8080", "secret", true, "APIAddr"},
		{"http://api.example.com:8080", "secret", true, "https"},
		{"ftp://127.0.0.1/", "secret", true, "scheme"},
		{"", "secret", true, "advertises no API address"},
		{loopback, "", true, "AdminToken"},
		{loopback, "secret", false, ""},
		{strings.Replace(loopback, "127.0.0.1", "localhost", 1), "secret", false, ""},
		{"https://127.0.0.1:1/", "secret", false, "connect"}, // allowed; nothing listens
	} {
		t.Run(tc.addr, func(t *testing.T) {
			c := newCluster(t, memlease.Options{})
			c.addAt("a", tc.addr, nil)
			c.activeOne()
			b := c.add("b", func(cfg *ha.Config) { cfg.AdminToken = tc.token })
			eventually(t, "b sees a lead", func() bool { return b.node.Status().Leader.ID == "a" })
			before := hits
			err := b.node.Switchover(context.Background(), "")
			if tc.refused != errors.Is(err, ha.ErrForward) {
				t.Fatalf("Switchover forwarded to %q: %v; want refused = %v", tc.addr, err, tc.refused)
			}
			if tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("error %v does not mention %q", err, tc.want)
			}
			if tc.refused && hits != before {
				t.Errorf("a refused forward reached the server")
			}
			if strings.Contains(errString(err), "secret") {
				t.Errorf("the error shows the token: %v", err)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
