package dns_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/hakit/hakit/dns"
	"github.com/hakit/hakit/lease/clock"
	"github.com/hakit/hakit/lease/memlease"
)

// A Health promoted for a term answers from the term at the moment it is
// asked. A member frozen past its deadline (memlease's Pause: its timers
// stand still, so Done stays open) must answer 503 on its first request
// after waking, before anyone has demoted it. The term reaches Health
// through a Retry and a Multi, as in a real switcher chain.
func TestHealthAnswersFromTheTermAtAnswerTime(t *testing.T) {
	const ttl = 5 * time.Second
	fake := clock.NewFake(time.Unix(1_000_000, 0))
	el, err := memlease.NewElection(fake, memlease.Options{TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	a, err := el.Member("a", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	term, err := a.Campaign(t.Context())
	if err != nil {
		t.Fatal(err)
	}

	h := &dns.Health{Now: fake.Now}
	chain := dns.Multi(mustRetry(t, h, dns.DefaultRetryPolicy()))
	if err := dns.PromoteFor(t.Context(), chain, term); err != nil {
		t.Fatal(err)
	}
	get := func() (int, dns.HealthStatus) {
		t.Helper()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/lb", nil))
		var st dns.HealthStatus
		if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
			t.Fatalf("body %q: %v", rec.Body, err)
		}
		return rec.Code, st
	}
	if code, st := get(); code != http.StatusOK || st.Role != dns.RoleActive || st.Token != term.Token() {
		t.Fatalf("promoted: %d %+v, want 200 active with token %d", code, st, term.Token())
	}

	// Freeze the holder and let its deadline pass.
	if err := el.Pause("a"); err != nil {
		t.Fatal(err)
	}
	deadline := term.Deadline()
	fake.Set(deadline)
	select {
	case <-term.Done():
		t.Fatal("the frozen member's Done closed; the test needs it open")
	default:
	}
	code, st := get()
	if code != http.StatusServiceUnavailable || st.Role != dns.RoleStandby {
		t.Fatalf("after the deadline passed with the holder frozen: %d %+v, want 503 standby", code, st)
	}
	if !st.Since.Equal(deadline.UTC()) {
		t.Errorf("since = %v, want the deadline %v", st.Since, deadline.UTC())
	}

	// Waking ends the term; the answer stays 503, and Demote works.
	if err := el.Resume("a"); err != nil {
		t.Fatal(err)
	}
	<-term.Done()
	if code, _ := get(); code != http.StatusServiceUnavailable {
		t.Fatalf("after the term ended: %d, want 503", code)
	}
	if err := chain.Demote(context.Background(), term.Token()); err != nil {
		t.Fatal(err)
	}
}
