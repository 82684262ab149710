package etcdlease_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/hakit/hakit/lease"
	"github.com/hakit/hakit/lease/etcdlease"
	"github.com/hakit/hakit/storage/etcdstore/etcdtest"
)

// prefixSeq makes election prefixes unique within the test process.
var prefixSeq atomic.Int64

func newPrefix(t testing.TB) string {
	return fmt.Sprintf("test/%s/%d/", t.Name(), prefixSeq.Add(1))
}

// testLogger logs to stderr when -v is given and discards otherwise.
func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() && os.Getenv("ETCDLEASE_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return nil
}

// member is one candidate with its own link to etcd.
type member struct {
	e      *etcdlease.Elector
	proxy  *etcdtest.Proxy // nil when the client talks to etcd directly
	client *clientv3.Client
}

// newMember makes an Elector for id whose client reaches s through its own
// proxy, so the test can cut that member off alone.
func newMember(t testing.TB, s *etcdtest.Server, prefix, id string, ttl time.Duration, opts ...func(*etcdlease.Config)) *member {
	t.Helper()
	p := etcdtest.NewProxy(t, s)
	c := p.Client(t, fastReconnect)
	cfg := etcdlease.Config{
		Client: c, ID: id, Addr: id + ".example:7000", Prefix: prefix, TTL: ttl, Logger: testLogger(t),
	}
	for _, o := range opts {
		o(&cfg)
	}
	e, err := etcdlease.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return &member{e: e, proxy: p, client: c}
}

// campaign runs Campaign in the background and reports the outcome and
// the time it returned.
type campaignResult struct {
	term lease.Term
	err  error
	at   time.Time
	// prevDone reports whether the Done channel passed to campaignAsync
	// was already closed the moment Campaign returned.
	prevDone bool
}

// campaignAsync runs e.Campaign in the background. If prev is not nil,
// the result records whether prev was closed when Campaign returned: the
// exact "the old holder stepped down before the successor won" check.
func campaignAsync(ctx context.Context, e lease.Elector, prev <-chan struct{}) <-chan campaignResult {
	ch := make(chan campaignResult, 1)
	go func() {
		t, err := e.Campaign(ctx)
		r := campaignResult{term: t, err: err, at: time.Now()}
		if prev != nil {
			r.prevDone = isClosed(prev)
		}
		ch <- r
	}()
	return ch
}

func mustCampaign(t testing.TB, e lease.Elector) *etcdlease.Term {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	term, err := e.Campaign(ctx)
	if err != nil {
		t.Fatalf("Campaign: %v", err)
	}
	return term.(*etcdlease.Term)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond) // polling interval, not a wait for an event
	}
}

// isClosed reports whether ch is closed.
func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// stillHolds reports whether the term's leader key still exists in etcd
// with the term's create revision: the condition a bound storage write
// checks.
func stillHolds(ctx context.Context, c *clientv3.Client, term *etcdlease.Term) (bool, error) {
	tr, err := c.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(term.LeaderKey()), "=", term.CreateRevision())).
		Commit()
	if err != nil {
		return false, err
	}
	return tr.Succeeded, nil
}

// errIs fails the test unless errors.Is(err, target).
func errIs(t testing.TB, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error %v does not match %v", err, target)
	}
}

func clientv3WithPrefix() []clientv3.OpOption { return []clientv3.OpOption{clientv3.WithPrefix()} }

func clientv3LeaseID(id int64) clientv3.LeaseID { return clientv3.LeaseID(id) }

func errorsIsDeadline(err error) bool { return errors.Is(err, context.DeadlineExceeded) }

// waitCampaigning waits until n campaign keys exist under prefix, failing
// the test at once if the background campaign won returns instead.
func waitCampaigning(tb testing.TB, ctx context.Context, m *member, prefix string, n int, won <-chan campaignResult) {
	tb.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case r := <-won:
			tb.Fatalf("campaign returned while it should wait: %+v", r)
		default:
		}
		resp, err := m.client.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err == nil && resp.Count == int64(n) {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %d campaign keys under %q (last count %v, err %v)", n, prefix, resp, err)
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
}

// fastReconnect makes the client redial a lost connection within a few
// hundred milliseconds instead of gRPC's default backoff (1 s, growing
// 1.6 times per failure), as a deployment with a short TTL should; see
// the package doc.
func fastReconnect(c *clientv3.Config) {
	c.DialOptions = append(c.DialOptions, grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 500 * time.Millisecond},
		MinConnectTimeout: time.Second,
	}))
}
