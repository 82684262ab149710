//go:build unix

package raftlog

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// lockDir takes an exclusive advisory lock on dir/LOCK so that two Logs
// never append to the same WAL. The lock dies with the process.
func lockDir(dir, path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("raftlog: lock %s: %w", path, err)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("raftlog: lock %s: %w", path, err)
	}
	var lerr error
	if err := rc.Control(func(fd uintptr) {
		lerr = unix.Flock(int(fd), unix.LOCK_EX|unix.LOCK_NB)
	}); err != nil {
		lerr = err
	}
	if lerr != nil {
		f.Close()
		if lerr == unix.EWOULDBLOCK {
			return nil, fmt.Errorf("%w: %s is locked by another process or Log", ErrLocked, dir)
		}
		return nil, fmt.Errorf("raftlog: lock %s: %w", path, lerr)
	}
	return f, nil
}
