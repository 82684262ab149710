package dns_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/hakit/hakit/dns"
	"github.com/hakit/hakit/dns/switchertest"
	"github.com/hakit/hakit/fence"
)

func TestHealthHTTP(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	t1, t2 := t0.Add(time.Minute), t0.Add(2*time.Minute)
	now := t0
	h := &dns.Health{Now: func() time.Time { return now }}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	get := func(method string) (int, dns.HealthStatus) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+"/health", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var st dns.HealthStatus
		if method == http.MethodGet {
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
				t.Fatalf("decode body: %v", err)
			}
		}
		return resp.StatusCode, st
	}

	steps := []struct {
		name     string
		do       func() error
		wantCode int
		want     dns.HealthStatus
	}{
		{"fresh", nil, 503, dns.HealthStatus{Role: "standby"}},
		{"promoted", func() error { return h.Promote(t.Context(), 7) }, 200, dns.HealthStatus{Role: "active", Token: 7, Since: t0}},
		{"promoted again later keeps since", func() error {
			now = t1
			return h.Promote(t.Context(), 7)
		}, 200, dns.HealthStatus{Role: "active", Token: 7, Since: t0}},
		{"demoted", func() error { return h.Demote(t.Context(), 7) }, 503, dns.HealthStatus{Role: "standby", Token: 7, Since: t1}},
		{"stale promote refused", func() error {
			if err := h.Promote(t.Context(), 6); !errors.Is(err, fence.ErrStale) {
				return errors.New("Promote(6) not refused as stale: " + errString(err))
			}
			return nil
		}, 503, dns.HealthStatus{Role: "standby", Token: 7, Since: t1}},
		{"newer term", func() error {
			now = t2
			return h.Promote(t.Context(), 9)
		}, 200, dns.HealthStatus{Role: "active", Token: 9, Since: t2}},
	}
	for _, s := range steps {
		if s.do != nil {
			if err := s.do(); err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
		}
		code, st := get(http.MethodGet)
		if code != s.wantCode || st != s.want {
			t.Fatalf("%s: GET = %d %+v, want %d %+v", s.name, code, st, s.wantCode, s.want)
		}
		if code, _ := get(http.MethodHead); code != s.wantCode {
			t.Fatalf("%s: HEAD = %d, want %d", s.name, code, s.wantCode)
		}
	}
	if code, _ := get(http.MethodPost); code != http.StatusMethodNotAllowed {
		t.Fatalf("POST = %d, want 405", code)
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

func TestHealthBodyIsSmallJSON(t *testing.T) {
	h := &dns.Health{Now: func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }}
	if err := h.Promote(t.Context(), 12); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	want := `{"role":"active","token":"12","since":"2026-01-02T03:04:05Z"}` + "\n"
	if rec.Code != 200 || rec.Body.String() != want {
		t.Fatalf("got %d %q, want 200 %q", rec.Code, rec.Body.String(), want)
	}
}

func TestHealthConformance(t *testing.T) {
	switchertest.Run(t, switchertest.Harness{
		New: func(t *testing.T) switchertest.Backend {
			h := &dns.Health{}
			return switchertest.Backend{
				Switcher: func(*testing.T, string) dns.Switcher { return h },
				Observe: func(context.Context) (bool, fence.Token, error) {
					st := h.Status()
					return st.Role == dns.RoleActive, st.Token, nil
				},
			}
		},
	})
}
