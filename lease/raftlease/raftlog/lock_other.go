//go:build !unix

package raftlog

import (
	"fmt"
	"os"
)

// lockDir opens dir/LOCK without an OS lock: advisory file locks are only
// used on unix systems. Callers on other systems must not open one
// directory twice.
func lockDir(dir, path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("raftlog: lock %s: %w", path, err)
	}
	return f, nil
}
