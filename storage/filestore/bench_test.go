package filestore_test

import (
	"testing"

	"github.com/hakit/hakit/storage"
	"github.com/hakit/hakit/storage/storagetest"
)

// BenchmarkPut measures plain commits against fenced puts of one key on
// a local directory; every commit is fsynced, so the figures depend on
// the disk (and on a network volume, on its round trips).
func BenchmarkPut(b *testing.B) {
	storagetest.BenchmarkPut(b, func(b *testing.B) storage.Backend { return open(b, newDir(b)) })
}
