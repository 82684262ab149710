package raftlog

import (
	"errors"
	"fmt"
)

var (
	// ErrCorrupt is wrapped by every error that reports damage recovery
	// will not repair: a bad record followed by valid data, a bad record in
	// a segment that is not the last, a missing segment, or no usable
	// snapshot where the WAL needs one. The error is a *CorruptError that
	// names the file and the byte offset.
	ErrCorrupt = errors.New("raftlog: corrupt")
	// ErrClosed is returned by Save, CreateSnapshot and Compact after Close.
	ErrClosed = errors.New("raftlog: closed")
	// ErrFailed is wrapped (together with the cause) by every write method
	// once a write or sync has failed. After a failed fsync the page cache
	// cannot be trusted, so the Log refuses further writes; close it and
	// Open the directory again, which recovers to the last durable batch.
	ErrFailed = errors.New("raftlog: log failed")
	// ErrInvalid is wrapped when a caller passes state that the log could
	// not recover from, such as entries that leave a gap or a commit index
	// beyond the last entry. Nothing is written in that case.
	ErrInvalid = errors.New("raftlog: invalid argument")
	// ErrLocked is returned by Open when another Log (in this or another
	// process) holds the directory.
	ErrLocked = errors.New("raftlog: directory in use")
)

// CorruptError describes damage found on Open. It wraps ErrCorrupt.
type CorruptError struct {
	File   string // path of the damaged or inconsistent file
	Offset int64  // byte offset in File where the damage starts
	Reason string // what is wrong, in words
}

// Error names the file, the offset and the reason.
func (e *CorruptError) Error() string {
	return fmt.Sprintf("raftlog: corrupt: %s at offset %d: %s", e.File, e.Offset, e.Reason)
}

// Unwrap returns ErrCorrupt.
func (e *CorruptError) Unwrap() error { return ErrCorrupt }

func corruptf(file string, off int64, format string, args ...any) error {
	return &CorruptError{File: file, Offset: off, Reason: fmt.Sprintf(format, args...)}
}
