//go:build unix

package filestore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// dirLock is the store's lock: a process-local semaphore, so that one
// Backend's goroutines take turns, and flock(2) on the lock file, so that
// processes (and, through the NFS lock protocol, hosts) take turns.
//
// The semaphore comes first because the Linux NFS client emulates flock
// with POSIX byte-range locks, which belong to the process, not the file
// descriptor: two goroutines of one process would not exclude each other
// through the file lock alone.
type dirLock struct {
	sem  chan struct{}
	file *os.File
	// since is when the file lock was last taken; only the goroutine
	// holding sem reads or writes it.
	since time.Time
}

// openLock opens the lock file, creating it only if create is set.
func openLock(path string, create bool) (*dirLock, error) {
	flags := os.O_RDWR
	if create {
		flags |= os.O_CREATE
	}
	f, err := os.OpenFile(path, flags, 0o640)
	if err != nil {
		return nil, fmt.Errorf("filestore: open lock file: %w", err)
	}
	return &dirLock{sem: make(chan struct{}, 1), file: f}, nil
}

// Polling bounds for a lock held elsewhere. flock cannot be interrupted by
// a context, so the lock is taken with LOCK_NB and retried.
const (
	lockPollMin = 500 * time.Microsecond
	lockPollMax = 20 * time.Millisecond
)

// lock takes the lock, shared or exclusive, or returns ctx's error.
func (l *dirLock) lock(ctx context.Context, exclusive bool) error {
	select {
	case l.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := l.flock(ctx, exclusive); err != nil {
		<-l.sem
		return err
	}
	return nil
}

// upgrade turns a held shared lock into an exclusive one by releasing it
// and taking the exclusive lock, so another process may run in between;
// the caller must re-check what it read. (Converting in place would do
// the same on a local file system, but with the POSIX locks NFS uses, two
// readers converting at once would each wait for the other for ever.)
func (l *dirLock) upgrade(ctx context.Context) error {
	_ = unix.Flock(int(l.file.Fd()), unix.LOCK_UN)
	return l.flock(ctx, true)
}

func (l *dirLock) flock(ctx context.Context, exclusive bool) error {
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	delay := lockPollMin
	for {
		err := unix.Flock(int(l.file.Fd()), how|unix.LOCK_NB)
		if err == nil {
			l.since = time.Now()
			return nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("filestore: lock %s: %w", l.file.Name(), err)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		delay = min(2*delay, lockPollMax)
	}
}

func (l *dirLock) unlock() {
	// Closing the file would release the lock too; LOCK_UN fails only on
	// a bad descriptor, which Close reports.
	_ = unix.Flock(int(l.file.Fd()), unix.LOCK_UN)
	<-l.sem
}

func (l *dirLock) close() error { return l.file.Close() }

// heldFor returns how long the current holder has held the file lock.
func (l *dirLock) heldFor() time.Duration { return time.Since(l.since) }
