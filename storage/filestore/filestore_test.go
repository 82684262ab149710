package filestore_test

import (
	"testing"

	"github.com/hakit/hakit/storage"
	"github.com/hakit/hakit/storage/filestore"
	"github.com/hakit/hakit/storage/storagetest"
)

// newDir returns a new directory holding an empty store.
func newDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if err := filestore.Init(t.Context(), dir); err != nil {
		t.Fatalf("Init(%s): %v", dir, err)
	}
	return dir
}

func open(t testing.TB, dir string) *filestore.Backend {
	t.Helper()
	b, err := filestore.Open(t.Context(), dir)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func TestConformance(t *testing.T) {
	storagetest.TestBackend(t, func(t *testing.T) storage.Backend { return open(t, newDir(t)) })
}
