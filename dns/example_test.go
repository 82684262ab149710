package dns_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"time"

	"github.com/hakit/hakit/dns"
	"github.com/hakit/hakit/fence"
)

// A member that answers a load balancer's health check and runs a start
// script when it becomes active, and a stop script when it stops.
func ExampleMulti() {
	health := &dns.Health{Now: func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }}
	hooks, err := dns.NewExec(dns.ExecConfig{
		Member:  "db-1",
		Promote: [][]string{{"/bin/sh", "-c", `echo "starting as $HAKIT_MEMBER, term $HAKIT_TOKEN"`}},
		Demote:  [][]string{{"/bin/sh", "-c", `echo "stopping term $HAKIT_TOKEN"`}},
		Timeout: 10 * time.Second,
		// Script output goes to the logger, one record per line.
		Logger: slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
			ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
				if a.Key == slog.TimeKey || a.Key == "elapsed" {
					return slog.Attr{} // keep the example's output stable
				}
				return a
			},
		})),
	})
	if err != nil {
		panic(err)
	}
	// Promote runs the hooks first, then turns the health check green;
	// Demote does the reverse. Transient failures are retried.
	sw, err := dns.Retry(dns.Multi(hooks, health), dns.DefaultRetryPolicy())
	if err != nil {
		panic(err)
	}

	ctx := context.Background()
	if err := sw.Promote(ctx, 7); err != nil {
		panic(err)
	}
	check := func() {
		rec := httptest.NewRecorder()
		health.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/health", nil))
		fmt.Print(rec.Code, " ", rec.Body.String())
	}
	check()
	// A late call from an older term is refused, and changes nothing.
	err = sw.Promote(ctx, 6)
	fmt.Println("stale:", errors.Is(err, fence.ErrStale))
	if err := sw.Demote(ctx, 7); err != nil {
		panic(err)
	}
	check()
	// Output:
	// level=INFO msg="dns: exec: output" member=db-1 role=active token=7 command=/bin/sh stream=stdout line="starting as db-1, term 7"
	// level=INFO msg="dns: exec: command succeeded" member=db-1 role=active token=7 command=/bin/sh
	// 200 {"role":"active","token":"7","since":"2026-01-02T03:04:05Z"}
	// stale: true
	// level=INFO msg="dns: exec: output" member=db-1 role=standby token=7 command=/bin/sh stream=stdout line="stopping term 7"
	// level=INFO msg="dns: exec: command succeeded" member=db-1 role=standby token=7 command=/bin/sh
	// 503 {"role":"standby","token":"7","since":"2026-01-02T03:04:05Z"}
}

func ExampleHealth() {
	h := &dns.Health{}
	srv := httptest.NewServer(h) // in production: mux.Handle("/health", h)
	defer srv.Close()

	get := func() int {
		resp, err := http.Get(srv.URL)
		if err != nil {
			panic(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	fmt.Println("before promote:", get())
	_ = h.Promote(context.Background(), 3)
	fmt.Println("promoted:", get())
	_ = h.Demote(context.Background(), 3)
	fmt.Println("demoted:", get())
	// Output:
	// before promote: 503
	// promoted: 200
	// demoted: 503
}

func ExampleRetry() {
	calls := 0
	flaky := switcherFuncs{promote: func(context.Context, fence.Token) error {
		calls++
		if calls < 3 {
			return errors.New("connection reset")
		}
		return nil
	}}
	sw, err := dns.Retry(flaky, dns.RetryPolicy{Attempts: 5, Initial: time.Millisecond, Max: 10 * time.Millisecond, Multiplier: 2})
	if err != nil {
		panic(err)
	}
	err = sw.Promote(context.Background(), 1)
	fmt.Println(err, "after", calls, "calls")

	// A stale token, or an error marked permanent, is returned at once.
	calls = 0
	refused := switcherFuncs{promote: func(context.Context, fence.Token) error {
		calls++
		return dns.Permanent(errors.New("access denied"))
	}}
	sw, err = dns.Retry(refused, dns.DefaultRetryPolicy())
	if err != nil {
		panic(err)
	}
	err = sw.Promote(context.Background(), 1)
	fmt.Println(err, "after", calls, "call")
	// Output:
	// <nil> after 3 calls
	// access denied after 1 call
}

type switcherFuncs struct {
	promote func(context.Context, fence.Token) error
}

func (s switcherFuncs) Promote(ctx context.Context, t fence.Token) error { return s.promote(ctx, t) }
func (s switcherFuncs) Demote(ctx context.Context, t fence.Token) error  { return nil }
