package memstore_test

import (
	"testing"

	"github.com/hakit/hakit/storage"
	"github.com/hakit/hakit/storage/memstore"
	"github.com/hakit/hakit/storage/storagetest"
)

func TestBackend(t *testing.T) {
	storagetest.TestBackend(t, func(t *testing.T) storage.Backend { return memstore.NewBackend() })
}

func TestNew(t *testing.T) {
	storagetest.TestStore(t, func(t *testing.T) storage.Store { return memstore.New() })
}
