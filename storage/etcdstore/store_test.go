package etcdstore_test

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/lease"
	"github.com/hakit/hakit/storage"
	"github.com/hakit/hakit/storage/etcdstore"
	"github.com/hakit/hakit/storage/etcdstore/etcdtest"
	"github.com/hakit/hakit/storage/storagetest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestStoreConformance(t *testing.T) {
	t.Parallel()
	cli := etcdtest.Start(t).Client(t)
	storagetest.TestStore(t, func(t *testing.T) storage.Store {
		return etcdstore.New(cli, freshPrefix(t))
	})
}

func TestBackendConformance(t *testing.T) {
	t.Parallel()
	cli := etcdtest.Start(t).Client(t)
	storagetest.TestBackend(t, func(t *testing.T) storage.Backend {
		return etcdstore.NewBackend(cli, freshPrefix(t))
	})
}

// TestBoundStoreConformance runs the suite over a bound Store whose lease
// stays alive: binding must not change anything else.
func TestBoundStoreConformance(t *testing.T) {
	t.Parallel()
	cli := etcdtest.Start(t).Client(t)
	key, rev := leaderKey(t, cli, 3600)
	storagetest.TestStore(t, func(t *testing.T) storage.Store {
		return etcdstore.New(cli, freshPrefix(t)).Bind(key, rev)
	}, storagetest.WithScale(0.2))
}

func TestTLSClient(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t, etcdtest.WithTLS())
	s := etcdstore.New(srv.Client(t), "tls/")
	ctx := t.Context()
	v, err := s.Put(ctx, 3, "k", []byte("over TLS"))
	if err != nil {
		t.Fatalf("Put over TLS: %v", err)
	}
	it, err := s.Get(ctx, "k")
	if err != nil || string(it.Value) != "over TLS" || it.Version != v {
		t.Fatalf("Get over TLS = %q, version %d, %v; want %q, version %d", it.Value, it.Version, err, "over TLS", v)
	}
	if _, err := s.Put(ctx, 2, "k", nil); !errors.Is(err, fence.ErrStale) {
		t.Fatalf("stale Put over TLS: %v, want fence.ErrStale", err)
	}
}

// TestFenceRecord checks the layout the package doc promises, that a Store
// leaves the record alone while its token stays the same and raises it for
// a larger one, and that failed writes leave it alone.
func TestFenceRecord(t *testing.T) {
	t.Parallel()
	cli := etcdtest.Start(t).Client(t)
	ctx := t.Context()
	s := etcdstore.New(cli, "app/")
	fk := "app/" + etcdstore.FenceKey
	record := func() (fence.Token, int64) {
		t.Helper()
		resp, err := cli.Get(ctx, fk)
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("get fence record: %v, %d keys", err, len(resp.Kvs))
		}
		tok, err := etcdstore.DecodeFence(resp.Kvs[0].Value)
		if err != nil {
			t.Fatal(err)
		}
		return tok, resp.Kvs[0].ModRevision
	}

	v1, err := s.Put(ctx, 5, "k", []byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	if tok, rev := record(); tok != 5 || rev != int64(v1) {
		t.Fatalf("after the first write the record holds %d at revision %d, want 5 at %d", tok, rev, v1)
	}
	resp, err := cli.Get(ctx, "app/k")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "a" || resp.Kvs[0].ModRevision != int64(v1) {
		t.Fatalf("etcd key app/k = %v, %v; want value a at revision %d", resp.Kvs, err, v1)
	}
	if _, err := s.Put(ctx, 5, "k", []byte("b")); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, 5, "k"); err != nil {
		t.Fatal(err)
	}
	if tok, rev := record(); tok != 5 || rev != int64(v1) {
		t.Fatalf("equal-token writes rewrote the record: %d at revision %d, want 5 at %d", tok, rev, v1)
	}
	v3, err := s.CompareAndSwap(ctx, 9, "k", 0, []byte("c"))
	if err != nil {
		t.Fatal(err)
	}
	if tok, rev := record(); tok != 9 || rev != int64(v3) {
		t.Fatalf("after token 9 the record holds %d at revision %d, want 9 at %d", tok, rev, v3)
	}
	// A failed compare-and-swap with a larger token admits nothing.
	if _, err := s.CompareAndSwap(ctx, 11, "k", v1, []byte("d")); !errors.Is(err, storage.ErrConflict) ||
		!strings.Contains(err.Error(), strconv.FormatInt(int64(v3), 10)) {
		t.Fatalf("CompareAndSwap at an old version: %v, want storage.ErrConflict naming version %d", err, v3)
	}
	if tok, _ := record(); tok != 9 {
		t.Fatalf("a failed compare-and-swap raised the fence to %d", tok)
	}
	// Stale errors carry both tokens.
	_, err = s.Put(ctx, 4, "k", nil)
	var se *fence.StaleError
	if !errors.As(err, &se) || se.Token != 4 || se.High != 9 || !strings.Contains(err.Error(), `"k"`) {
		t.Fatalf("stale Put: %v, want a *fence.StaleError for 4 below 9 naming the key", err)
	}
}

// TestCorruptFence damages the fence record in the ways a truncation, an
// extension or a stray write would, and checks that every write is refused
// with an error naming the record, and that the record stays as it was.
func TestCorruptFence(t *testing.T) {
	t.Parallel()
	cli := etcdtest.Start(t).Client(t)
	ctx := t.Context()
	big := fence.Token(0x0102030405060708)
	tests := []struct {
		name   string
		record []byte
		token  fence.Token // the writer's token
	}{
		{"empty", []byte{}, 1},
		{"truncated larger token", etcdstore.EncodeFence(big)[:5], big - 1},
		{"truncated larger token, one byte", etcdstore.EncodeFence(big)[:1], 0x0100000000000000},
		{"truncated to 7 bytes", etcdstore.EncodeFence(300)[:7], 299},
		{"extended", append(etcdstore.EncodeFence(7), 0), 3},
		{"extended, next token", append(etcdstore.EncodeFence(7), 0xff), 6},
		{"extended, next token, zero", append(etcdstore.EncodeFence(7), 0), 6},
		{"truncated, next token", etcdstore.EncodeFence(7)[:7], 6},
		{"text", []byte("12"), 12},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			prefix := freshPrefix(t)
			fk := prefix + etcdstore.FenceKey
			if _, err := cli.Put(ctx, fk, string(tc.record)); err != nil {
				t.Fatal(err)
			}
			s := etcdstore.New(cli, prefix)
			for _, w := range []struct {
				name  string
				write func() error
			}{
				{"Put", func() error { _, err := s.Put(ctx, tc.token, "k", []byte("v")); return err }},
				{"CompareAndSwap", func() error { _, err := s.CompareAndSwap(ctx, tc.token, "k", 0, []byte("v")); return err }},
				{"Delete", func() error { return s.Delete(ctx, tc.token, "k") }},
			} {
				err := w.write()
				if !errors.Is(err, etcdstore.ErrCorruptFence) || !strings.Contains(err.Error(), strconv.Quote(fk)) {
					t.Fatalf("%s with record %q: %v, want etcdstore.ErrCorruptFence naming %q", w.name, tc.record, err, fk)
				}
			}
			if _, err := s.Get(ctx, "k"); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("Get after refused writes: %v, want storage.ErrNotFound", err)
			}
			resp, err := cli.Get(ctx, fk)
			if err != nil || len(resp.Kvs) != 1 || !bytes.Equal(resp.Kvs[0].Value, tc.record) {
				t.Fatalf("fence record after refused writes: %v, %v; want %q untouched", resp.Kvs, err, tc.record)
			}
		})
	}
}

// leaderKey makes a key attached to a fresh lease of ttl seconds, as an
// etcd elector's leader key is, and returns it with its create revision.
func leaderKey(t *testing.T, cli *clientv3.Client, ttl int64) (string, int64) {
	t.Helper()
	g, err := cli.Grant(t.Context(), ttl)
	if err != nil {
		t.Fatal(err)
	}
	key := "election/" + freshPrefix(t) + strconv.FormatInt(int64(g.ID), 16)
	resp, err := cli.Put(t.Context(), key, "member-a", clientv3.WithLease(g.ID))
	if err != nil {
		t.Fatal(err)
	}
	return key, resp.Header.Revision
}

func TestBind(t *testing.T) {
	t.Parallel()
	cli := etcdtest.Start(t).Client(t)
	ctx := t.Context()

	wantLost := func(t *testing.T, what string, err error, key string) {
		t.Helper()
		if !errors.Is(err, lease.ErrLost) || !strings.Contains(err.Error(), strconv.Quote(key)) {
			t.Fatalf("%s: %v, want lease.ErrLost naming %q", what, err, key)
		}
	}
	writes := func(s *etcdstore.Store, tok fence.Token) map[string]func() error {
		return map[string]func() error{
			"Put":            func() error { _, err := s.Put(ctx, tok, "k", []byte("late")); return err },
			"CompareAndSwap": func() error { _, err := s.CompareAndSwap(ctx, tok, "k", 0, []byte("late")); return err },
			"Delete":         func() error { return s.Delete(ctx, tok, "k") },
		}
	}

	tests := []struct {
		name string
		end  func(t *testing.T, key string) // ends the term behind key
	}{
		{"lease revoked", func(t *testing.T, key string) {
			resp, err := cli.Get(ctx, key)
			if err != nil || len(resp.Kvs) != 1 {
				t.Fatal(err)
			}
			if _, err := cli.Revoke(ctx, clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
				t.Fatal(err)
			}
		}},
		{"key deleted", func(t *testing.T, key string) {
			if _, err := cli.Delete(ctx, key); err != nil {
				t.Fatal(err)
			}
		}},
		{"key re-created", func(t *testing.T, key string) {
			if _, err := cli.Delete(ctx, key); err != nil {
				t.Fatal(err)
			}
			if _, err := cli.Put(ctx, key, "member-b"); err != nil {
				t.Fatal(err)
			}
		}},
		{"lease expired", func(t *testing.T, key string) {
			resp, err := cli.Get(ctx, key)
			if err != nil || len(resp.Kvs) != 1 {
				t.Fatal(err)
			}
			// Shorten nothing: wait for the 1-second lease of this case
			// to run out, polling etcd, never sleeping blind.
			deadline := time.Now().Add(10 * time.Second)
			for {
				ttl, err := cli.TimeToLive(ctx, clientv3.LeaseID(resp.Kvs[0].Lease))
				if err != nil {
					t.Fatal(err)
				}
				if ttl.TTL == -1 {
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("lease %x still alive after 10 s", resp.Kvs[0].Lease)
				}
				time.Sleep(50 * time.Millisecond) // a poll interval, not a wait for an event
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ttl := int64(60)
			if tc.name == "lease expired" {
				ttl = 1
			}
			key, rev := leaderKey(t, cli, ttl)
			plain := etcdstore.New(cli, freshPrefix(t))
			bound := plain.BindTerm(term{key, rev})
			if _, err := bound.Put(ctx, 7, "k", []byte("held")); err != nil {
				t.Fatalf("bound Put while the lease is held: %v", err)
			}
			tc.end(t, key)
			for name, w := range writes(bound, 7) {
				wantLost(t, "bound "+name+" after the term ended", w(), key)
			}
			// The fence alone would still admit token 7: no successor
			// wrote. Binding is what stopped the writes above.
			it, err := plain.Get(ctx, "k")
			if err != nil || string(it.Value) != "held" {
				t.Fatalf("Get after refused bound writes = %q, %v; want %q", it.Value, err, "held")
			}
			if _, err := plain.Put(ctx, 7, "k", []byte("unbound")); err != nil {
				t.Fatalf("unbound Put with the same token: %v", err)
			}
		})
	}

	t.Run("no create revision", func(t *testing.T) {
		s := etcdstore.New(cli, freshPrefix(t)).Bind("some/key", 0)
		for name, w := range writes(s, 1) {
			wantLost(t, name+" bound to revision 0", w(), "some/key")
		}
	})

	t.Run("stale and bound", func(t *testing.T) {
		key, rev := leaderKey(t, cli, 60)
		s := etcdstore.New(cli, freshPrefix(t))
		if _, err := s.Put(ctx, 9, "k", nil); err != nil {
			t.Fatal(err)
		}
		for name, w := range writes(s.Bind(key, rev), 8) {
			if err := w(); !errors.Is(err, fence.ErrStale) {
				t.Fatalf("bound %s with a stale token: %v, want fence.ErrStale", name, err)
			}
		}
	})
}

func TestCancelledContext(t *testing.T) {
	t.Parallel()
	cli := etcdtest.Start(t).Client(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	s := etcdstore.New(cli, "p/")
	if _, err := s.Put(ctx, 1, "k", nil); !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), `"k"`) {
		t.Fatalf("Put with a cancelled context: %v, want context.Canceled naming the key", err)
	}
}

// TestFenceChangedUnderStore covers the steady-state transaction, which a
// Store uses once it has written the record itself: it must notice a
// larger token from another Store, a record deleted by hand and a damaged
// record.
func TestFenceChangedUnderStore(t *testing.T) {
	t.Parallel()
	cli := etcdtest.Start(t).Client(t)
	ctx := t.Context()
	prefix := freshPrefix(t)
	fk := prefix + etcdstore.FenceKey
	a, b := etcdstore.New(cli, prefix), etcdstore.New(cli, prefix)
	put := func(s *etcdstore.Store, tok fence.Token) error {
		_, err := s.Put(ctx, tok, "k", []byte(tok.String()))
		return err
	}
	for range 2 { // the second makes sure a is in its steady state
		if err := put(a, 5); err != nil {
			t.Fatal(err)
		}
	}

	if err := put(b, 6); err != nil {
		t.Fatal(err)
	}
	var se *fence.StaleError
	if err := put(a, 5); !errors.As(err, &se) || se.Token != 5 || se.High != 6 {
		t.Fatalf("Put(5) after another store admitted 6: %v, want stale 5 below 6", err)
	}

	if _, err := cli.Delete(ctx, fk); err != nil {
		t.Fatal(err)
	}
	if err := put(b, 6); err != nil { // b's steady state meets a missing record
		t.Fatalf("Put(6) after the record was deleted: %v", err)
	}
	if _, err := cli.Put(ctx, fk, string(etcdstore.EncodeFence(9)[:4])); err != nil {
		t.Fatal(err)
	}
	if err := put(b, 6); !errors.Is(err, etcdstore.ErrCorruptFence) {
		t.Fatalf("Put(6) over a truncated record of 9: %v, want etcdstore.ErrCorruptFence", err)
	}
	it, err := a.Get(ctx, "k")
	if err != nil || string(it.Value) != "6" {
		t.Fatalf("Get = %q, %v; want 6", it.Value, err)
	}
}

// TestServerRestart checks that a Store keeps its data and fence across
// an etcd restart and works again once its client has reconnected.
func TestServerRestart(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	s := etcdstore.New(srv.Client(t), "r/")
	ctx := t.Context()
	if _, err := s.Put(ctx, 4, "k", []byte("before")); err != nil {
		t.Fatal(err)
	}
	srv.Restart(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, cancel := context.WithTimeout(ctx, time.Second)
		_, err := s.Put(c, 4, "k2", []byte("after"))
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Put after restart still failing: %v", err)
		}
		time.Sleep(10 * time.Millisecond) // poll interval, in case Put fails fast
	}
	if it, err := s.Get(ctx, "k"); err != nil || string(it.Value) != "before" {
		t.Fatalf("Get after restart = %q, %v; want before", it.Value, err)
	}
	if _, err := s.Put(ctx, 3, "k", nil); !errors.Is(err, fence.ErrStale) {
		t.Fatalf("Put(3) after restart: %v, want fence.ErrStale", err)
	}
}

// term is a LeaderKeyHolder as an etcd elector's Term provides it.
type term struct {
	key string
	rev int64
}

func (t term) LeaderKey() string     { return t.key }
func (t term) CreateRevision() int64 { return t.rev }
