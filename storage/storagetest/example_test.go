package storagetest_test

import (
	"testing"

	"github.com/hakit/hakit/storage"
	"github.com/hakit/hakit/storage/memstore"
	"github.com/hakit/hakit/storage/storagetest"
)

// A backend's test file runs the whole suite with one call; open returns
// a fresh, empty backend for each subtest.
func ExampleTestBackend() {
	testBackend := func(t *testing.T) {
		storagetest.TestBackend(t, func(t *testing.T) storage.Backend {
			return memstore.NewBackend()
		})
	}
	_ = testBackend // in a _test.go file: func TestBackend(t *testing.T)
}

// A Store that checks the fence natively (in a transaction, in a
// replicated state machine) runs TestStore; a slow one may scale the
// workloads down.
func ExampleTestStore() {
	testStore := func(t *testing.T) {
		storagetest.TestStore(t, func(t *testing.T) storage.Store {
			return memstore.New()
		}, storagetest.WithScale(0.5))
	}
	_ = testStore
}
