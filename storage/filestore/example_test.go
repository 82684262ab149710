package filestore_test

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/storage"
	"github.com/hakit/hakit/storage/filestore"
)

// Each member opens the same directory on the shared volume and fences
// its writes with its term's token.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "hakit-filestore-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	// Once, when the volume is provisioned.
	if err := filestore.Init(ctx, dir); err != nil {
		panic(err)
	}

	b, err := filestore.Open(ctx, dir)
	if err != nil {
		panic(err)
	}
	defer b.Close()
	store := storage.Fenced(b)

	if _, err := store.Put(ctx, 3, "checkpoint", []byte("lsn 1000")); err != nil {
		panic(err)
	}
	// Another member, term 4, takes over through its own Backend.
	b2, err := filestore.Open(ctx, dir)
	if err != nil {
		panic(err)
	}
	defer b2.Close()
	if _, err := storage.Fenced(b2).Put(ctx, 4, "checkpoint", []byte("lsn 1500")); err != nil {
		panic(err)
	}

	_, err = store.Put(ctx, 3, "checkpoint", []byte("lsn 1100"))
	fmt.Println(errors.Is(err, fence.ErrStale))
	it, _ := store.Get(ctx, "checkpoint")
	fmt.Println(string(it.Value))
	// Output:
	// true
	// lsn 1500
}
