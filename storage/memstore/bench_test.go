package memstore_test

import (
	"testing"

	"github.com/hakit/hakit/storage"
	"github.com/hakit/hakit/storage/memstore"
	"github.com/hakit/hakit/storage/storagetest"
)

func BenchmarkPut(b *testing.B) {
	storagetest.BenchmarkPut(b, func(b *testing.B) storage.Backend { return memstore.NewBackend() })
}
