package raftlog

import (
	"fmt"
	"io"
	"log/slog"
)

// DefaultSegmentSize is the size at which the WAL moves on to a new segment
// file unless WithSegmentSize says otherwise.
const DefaultSegmentSize = 64 << 20

// DefaultSnapshotsKept is how many snapshot files are kept on disk unless
// WithSnapshotsKept says otherwise. Older ones are a fallback if the newest
// is damaged, usable only while the WAL still reaches back to them.
const DefaultSnapshotsKept = 2

// Option configures Open.
type Option func(*options) error

type options struct {
	logger    *slog.Logger
	segSize   int64
	snapsKept int
}

func defaultOptions() options {
	return options{
		logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		segSize:   DefaultSegmentSize,
		snapsKept: DefaultSnapshotsKept,
	}
}

// WithLogger sets the logger for recovery warnings (torn tails, skipped
// snapshots) and for failed best-effort clean-ups. nil discards.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l != nil {
			o.logger = l
		}
		return nil
	}
}

// WithSegmentSize sets the size in bytes after which Save starts a new WAL
// segment (default DefaultSegmentSize). A segment can exceed it by one
// batch. It must be at least 4 KiB.
func WithSegmentSize(n int64) Option {
	return func(o *options) error {
		if n < 4<<10 {
			return fmt.Errorf("%w: segment size %d is below the 4096-byte minimum", ErrInvalid, n)
		}
		o.segSize = n
		return nil
	}
}

// WithSnapshotsKept sets how many snapshot files are kept (default
// DefaultSnapshotsKept, minimum 1).
func WithSnapshotsKept(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("%w: snapshots kept %d is below 1", ErrInvalid, n)
		}
		o.snapsKept = n
		return nil
	}
}

// Recovery describes what Open found and repaired. The zero parts mean
// nothing happened: a clean shutdown gives Torn == nil and no skipped or
// removed files.
type Recovery struct {
	// SnapshotIndex and SnapshotTerm identify the snapshot the state was
	// rebuilt from; zero if none.
	SnapshotIndex, SnapshotTerm uint64
	// LastIndex is the last log index after recovery.
	LastIndex uint64
	// Segments is the number of WAL segment files read.
	Segments int
	// Torn is set when the last segment ended in a torn write that was cut
	// off. Only batches whose Save had not returned can be lost this way.
	Torn *TornTail
	// SkippedSnapshots lists snapshot files that were not used: damaged
	// ones passed over for an older snapshot, and orphans newer than any
	// snapshot the WAL acknowledges (a crash inside Save or
	// CreateSnapshot), which are deleted.
	SkippedSnapshots []SkippedFile
	// RemovedTemp lists temporary files left by a crash and deleted.
	RemovedTemp []string
}

// Clean reports whether recovery found nothing to repair or skip.
func (r Recovery) Clean() bool {
	return r.Torn == nil && len(r.SkippedSnapshots) == 0 && len(r.RemovedTemp) == 0
}

// TornTail describes bytes cut from the end of the last WAL segment.
type TornTail struct {
	File    string // the segment file
	Offset  int64  // its new length: the end of the last complete batch
	Dropped int64  // bytes removed
	Reason  string // what was found after Offset
}

// SkippedFile is a file recovery did not use, and why.
type SkippedFile struct {
	File   string
	Reason string
}
