package etcdtest_test

import (
	"context"
	"crypto/tls"
	"errors"
	"testing"
	"time"

	"github.com/hakit/hakit/storage/etcdstore/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ctx returns a context that ends with the test or after d.
func ctx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	c, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return c
}

func put(t *testing.T, cli *clientv3.Client, k, v string) {
	t.Helper()
	if _, err := cli.Put(ctx(t, 5*time.Second), k, v); err != nil {
		t.Fatalf("put %q: %v", k, err)
	}
}

func mustGet(t *testing.T, cli *clientv3.Client, k, want string) {
	t.Helper()
	resp, err := cli.Get(ctx(t, 5*time.Second), k)
	if err != nil {
		t.Fatalf("get %q: %v", k, err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != want {
		t.Fatalf("get %q = %v, want %q", k, resp.Kvs, want)
	}
}

// eventually polls f until it returns nil or d passes.
func eventually(t *testing.T, d time.Duration, f func(context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		c, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
		err := f(c)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing after %v: %v", d, err)
		}
		time.Sleep(10 * time.Millisecond) // poll interval, in case f fails fast
	}
}

func TestStartServesRequests(t *testing.T) {
	t.Parallel()
	s := etcdtest.Start(t)
	cli := s.Client(t)
	put(t, cli, "k", "v")
	mustGet(t, cli, "k", "v")
	if got := s.Endpoints(); len(got) != 1 || got[0] != "http://"+s.Addr() {
		t.Fatalf("Endpoints() = %v, Addr() = %q", got, s.Addr())
	}
	if s.TLSConfig() != nil {
		t.Fatal("TLSConfig() of a plain server is not nil")
	}
}

func TestServersRunSideBySide(t *testing.T) {
	t.Parallel()
	a, b := etcdtest.Start(t), etcdtest.Start(t)
	if a.Addr() == b.Addr() {
		t.Fatalf("two servers on the same address %s", a.Addr())
	}
	put(t, a.Client(t), "k", "a")
	put(t, b.Client(t), "k", "b")
	mustGet(t, a.Client(t), "k", "a")
	mustGet(t, b.Client(t), "k", "b")
}

func TestRestartKeepsDataAndAddress(t *testing.T) {
	t.Parallel()
	s := etcdtest.Start(t)
	addr := s.Addr()
	cli := s.Client(t)
	put(t, cli, "k", "before")

	s.Stop()
	if s.Etcd() != nil {
		t.Fatal("Etcd() is not nil after Stop")
	}
	c, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	_, err := cli.Get(c, "k")
	cancel()
	if err == nil {
		t.Fatal("Get succeeded while the server was stopped")
	}

	s.Restart(t)
	if s.Addr() != addr {
		t.Fatalf("address changed across restart: %s, then %s", addr, s.Addr())
	}
	// The old client reconnects by itself.
	eventually(t, 10*time.Second, func(c context.Context) error {
		_, err := cli.Get(c, "k")
		return err
	})
	mustGet(t, cli, "k", "before")
	put(t, cli, "k", "after")
	mustGet(t, s.Client(t), "k", "after")
}

func TestProxyFaults(t *testing.T) {
	t.Parallel()
	s := etcdtest.Start(t)
	p := etcdtest.NewProxy(t, s)
	viaProxy := p.Client(t)
	direct := s.Client(t)
	put(t, viaProxy, "k", "v0")

	tests := []struct {
		name       string
		cut, heal  func()
		deliveries bool // whether the held request lands after healing
	}{
		{"blackhole both", func() { p.Blackhole(etcdtest.Both) }, p.Heal, false},
		{"blackhole to server", func() { p.Blackhole(etcdtest.ToServer) }, func() { p.Unblackhole(etcdtest.ToServer) }, false},
		{"blackhole to client", func() { p.Blackhole(etcdtest.ToClient) }, func() { p.Unblackhole(etcdtest.ToClient) }, true},
		{"pause both", func() { p.Pause(etcdtest.Both) }, func() { p.Unpause(etcdtest.Both) }, true},
		{"delay", func() { p.Delay(etcdtest.Both, time.Second) }, func() { p.Undelay(etcdtest.Both) }, true},
	}
	for _, tc := range tests {
		tc.cut()
		c, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		_, err := viaProxy.Get(c, "k")
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			tc.heal()
			t.Fatalf("%s: Get through the proxy = %v, want context.DeadlineExceeded", tc.name, err)
		}
		// The direct link is unaffected.
		put(t, direct, "k", tc.name)
		tc.heal()
		eventually(t, 10*time.Second, func(c context.Context) error {
			resp, err := viaProxy.Get(c, "k")
			if err == nil && (len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != tc.name) {
				return errors.New("stale read")
			}
			return err
		})
	}
}

func TestProxySurvivesRestart(t *testing.T) {
	t.Parallel()
	s := etcdtest.Start(t)
	p := etcdtest.NewProxy(t, s)
	cli := p.Client(t)
	put(t, cli, "k", "v")
	s.Restart(t)
	eventually(t, 10*time.Second, func(c context.Context) error {
		_, err := cli.Put(c, "k", "w")
		return err
	})
	mustGet(t, s.Client(t), "k", "w")
}

func TestTLS(t *testing.T) {
	t.Parallel()
	s := etcdtest.Start(t, etcdtest.WithTLS())
	if got := s.Endpoints()[0]; got != "https://"+s.Addr() {
		t.Fatalf("Endpoints()[0] = %q, want an https URL", got)
	}
	cli := s.Client(t)
	put(t, cli, "k", "v")
	mustGet(t, s.Client(t), "k", "v")

	// Through the proxy TLS runs end to end.
	mustGet(t, etcdtest.NewProxy(t, s).Client(t), "k", "v")

	// A client without the client certificate, or without TLS, is refused.
	tests := []struct {
		name string
		tls  *tls.Config
	}{
		{"no client certificate", &tls.Config{RootCAs: s.TLSConfig().RootCAs}},
		{"untrusted server", &tls.Config{Certificates: s.TLSConfig().Certificates}},
	}
	for _, tc := range tests {
		bad := s.Client(t, func(c *clientv3.Config) { c.TLS = tc.tls })
		c, cancel := context.WithTimeout(t.Context(), time.Second)
		_, err := bad.Get(c, "k")
		cancel()
		if err == nil {
			t.Errorf("%s: Get succeeded", tc.name)
		}
	}
}
