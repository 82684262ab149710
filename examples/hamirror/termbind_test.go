package main

import (
	"context"
	"errors"
	"testing"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/lease"
	"github.com/hakit/hakit/lease/etcdlease"
	"github.com/hakit/hakit/storage/etcdstore"
	"github.com/hakit/hakit/storage/etcdstore/etcdtest"
)

// TestTermStoreBindsWrites: once the term behind a token has ended, a write
// with that token fails with lease.ErrLost even though no successor has
// written (the fence alone would still admit it).
func TestTermStoreBindsWrites(t *testing.T) {
	ctx := context.Background()
	cli := etcdtest.Start(t).Client(t)
	el, err := etcdlease.New(etcdlease.Config{Client: cli, ID: "a", Prefix: "t/election/"})
	if err != nil {
		t.Fatal(err)
	}
	te := &termElector{Elector: el}
	t.Cleanup(func() { _ = te.Close() })
	s := &termStore{base: etcdstore.New(cli, "t/store/"), el: te}

	term, err := te.Campaign(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tok := term.Token()
	if _, err := s.Put(ctx, tok, "k", []byte("v1")); err != nil {
		t.Fatalf("Put while the term holds: %v", err)
	}
	if err := term.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = s.Put(ctx, tok, "k", []byte("v2"))
	if !errors.Is(err, lease.ErrLost) {
		t.Fatalf("Put after the term ended = %v, want lease.ErrLost", err)
	}
	if _, err := s.CompareAndSwap(ctx, tok, "k", 0, []byte("v3")); !errors.Is(err, lease.ErrLost) {
		t.Fatalf("CompareAndSwap after the term ended = %v, want lease.ErrLost", err)
	}
	if err := s.Delete(ctx, tok, "k"); !errors.Is(err, lease.ErrLost) {
		t.Fatalf("Delete after the term ended = %v, want lease.ErrLost", err)
	}
	it, err := s.Get(ctx, "k")
	if err != nil || string(it.Value) != "v1" {
		t.Fatalf("Get = %q, %v; want v1", it.Value, err)
	}
	// A token of no term this member won is fenced only.
	if _, err := s.Put(ctx, tok+1000, "other", []byte("x")); err != nil {
		t.Fatalf("Put with an unbound token: %v", err)
	}
	if _, err := s.Put(ctx, tok, "other", []byte("y")); !errors.Is(err, fence.ErrStale) && !errors.Is(err, lease.ErrLost) {
		t.Fatalf("Put with the old token after a newer one = %v, want stale or lost", err)
	}
}
