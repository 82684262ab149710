package filestore

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Names inside the store's directory.
const (
	lockName    = "LOCK"
	counterName = "VERSION"
	journalName = "JOURNAL"
	keysDir     = "k"
	tmpPrefix   = ".tmp-"
)

// keyFileName maps a key to its file name in the keys directory: the hex
// SHA-256 of the key. Any valid key gets a fixed-length name of lowercase
// hex digits, which cannot leave the directory, exceeds no file system's
// name limit, and is the same on case-insensitive file systems. The key
// itself is stored in the file and checked on every read, so even a
// collision would be an error, never another key's value.
func keyFileName(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// writeFileAtomic replaces path with data so that, after a crash at any
// point, path holds either its old contents or all of data: write a
// temporary file in the same directory, fsync it, rename it over path.
// It does not fsync the directory; the caller does, once for a batch.
// guard runs just before the rename; if it fails, nothing is renamed.
func writeFileAtomic(path string, data []byte, guard func() error) error {
	dir := filepath.Dir(path)
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(dir, tmpPrefix+hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return fmt.Errorf("filestore: create temporary file for %s: %w", path, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = guard()
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("filestore: write %s: %w", path, err)
	}
	return nil
}

// syncDir makes the directory entries of dir (renames, removals) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("filestore: open directory %s for sync: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("filestore: sync directory %s: %w", dir, err)
	}
	return nil
}

// removeTemps deletes temporary files that a crashed writer left in dir.
// The caller holds the exclusive lock, so no live writer owns them.
func removeTemps(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("filestore: list %s: %w", dir, err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !os.IsNotExist(err) {
				return fmt.Errorf("filestore: remove leftover temporary file: %w", err)
			}
		}
	}
	return nil
}
