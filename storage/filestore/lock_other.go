//go:build !unix

package filestore

import (
	"context"
	"errors"
	"time"
)

// dirLock needs flock(2); on other systems Open fails.
type dirLock struct{}

func openLock(string, bool) (*dirLock, error) {
	return nil, errors.New("filestore: file locking is supported only on Unix systems")
}

func (l *dirLock) lock(context.Context, bool) error { return errors.ErrUnsupported }
func (l *dirLock) upgrade(context.Context) error    { return errors.ErrUnsupported }
func (l *dirLock) unlock()                          {}
func (l *dirLock) close() error                     { return nil }
func (l *dirLock) heldFor() time.Duration           { return 0 }
