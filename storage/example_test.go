package storage_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/storage"
	"github.com/hakit/hakit/storage/memstore"
)

// Two members share one backend. The member of term 8 writes a
// checkpoint; its successor, term 9, advances it; when the old member
// wakes up and writes, its write is refused.
func ExampleFenced() {
	ctx := context.Background()
	backend := memstore.NewBackend()
	old, successor := storage.Fenced(backend), storage.Fenced(backend)

	if _, err := old.Put(ctx, 8, "checkpoint", []byte("pos 100")); err != nil {
		panic(err)
	}
	it, _ := successor.Get(ctx, "checkpoint")
	if _, err := successor.CompareAndSwap(ctx, 9, "checkpoint", it.Version, []byte("pos 250")); err != nil {
		panic(err)
	}

	_, err := old.Put(ctx, 8, "checkpoint", []byte("pos 120"))
	fmt.Println(errors.Is(err, fence.ErrStale), err)
	it, _ = successor.Get(ctx, "checkpoint")
	fmt.Println(string(it.Value))
	// Output:
	// true fence: stale token 8: token 9 already admitted
	// pos 250
}

// CompareAndSwap advances a checkpoint only if nobody changed it since it
// was read; version 0 means "create it only if it does not exist".
func ExampleStore_CompareAndSwap() {
	ctx := context.Background()
	s := memstore.New()
	v, err := s.CompareAndSwap(ctx, 1, "checkpoint", 0, []byte("pos 1"))
	fmt.Println(err)
	_, err = s.CompareAndSwap(ctx, 1, "checkpoint", 0, []byte("pos 1 again"))
	fmt.Println(errors.Is(err, storage.ErrConflict))
	_, err = s.CompareAndSwap(ctx, 1, "checkpoint", v, []byte("pos 2"))
	fmt.Println(err)
	// Output:
	// <nil>
	// true
	// <nil>
}
