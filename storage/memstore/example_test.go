package memstore_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/storage"
	"github.com/hakit/hakit/storage/memstore"
)

func ExampleNew() {
	ctx := context.Background()
	s := memstore.New()
	if _, err := s.Put(ctx, 2, "state", []byte("ready")); err != nil {
		panic(err)
	}
	it, _ := s.Get(ctx, "state")
	fmt.Printf("%s at version %d\n", it.Value, it.Version)

	_, err := s.Put(ctx, 1, "state", []byte("from a deposed member"))
	fmt.Println(errors.Is(err, fence.ErrStale))
	// Output:
	// ready at version 1
	// true
}

// A Backend commits several keys at once, only if its conditions hold.
func ExampleBackend_Commit() {
	ctx := context.Background()
	b := memstore.NewBackend()
	v, _ := b.Commit(ctx, nil, []storage.Op{{Key: "a", Value: []byte("1")}, {Key: "b", Value: []byte("1")}})
	_, err := b.Commit(ctx, []storage.Cond{{Key: "a", Version: v + 1}}, []storage.Op{{Key: "b", Delete: true}})
	fmt.Println(errors.Is(err, storage.ErrConflict))
	it, _ := b.Get(ctx, "b")
	fmt.Println(string(it.Value), it.Version == v)
	// Output:
	// true
	// 1 true
}
