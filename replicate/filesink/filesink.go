// Package filesink is a transactional file Sink for package replicate: it
// appends records to a data file and commits its position and fencing
// token in the same crash-safe step, so a replicate.Stream delivers to it
// exactly once across crashes and failovers.
//
// # Files
//
// For a data file "out.log" the sink keeps "out.log.state" (the committed
// State) and "out.log.lock" (a lock file for flock). Records are appended
// to the data file in the framing of package filelog (length, CRC-32C,
// data), so ReadRecords or a filelog decoder can read it back.
//
// # The commit protocol
//
// Apply, holding an exclusive flock on the lock file:
//
//  1. reads the state file, and refuses a token below the one it records
//     (fence.ErrStale);
//  2. cuts the data file back to the committed length (removing what a
//     writer that crashed mid-Apply left behind);
//  3. writes the framed records at the committed length and fsyncs the
//     data file;
//  4. writes the new State (length, position, token) to a temporary file,
//     fsyncs it, renames it over the state file and fsyncs the directory.
//
// The rename is the commit point. A crash before it leaves the old state,
// and the bytes past its length are cut off on the next Open or Apply; a
// crash after it leaves the new state with its data already durable. The
// flock makes steps 1-4 atomic between processes on one host; on a
// network file system it is only as good as that file system's flock.
package filesink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/filelog"
)

// ErrClosed is returned by a closed Sink.
var ErrClosed = errors.New("filesink: sink closed")

// Sink is the transactional file sink. It implements
// replicate.DurableSink and replicate.HeartbeatSink and is safe for
// concurrent use; several Sinks, in one process or several, may share a
// data file, and the flock and the token keep their commits consistent.
type Sink struct {
	path, statePath, tmpPath, lockPath string

	// sem holds the right to use data and lock. It is a channel rather
	// than a mutex so that waiting for it honours a context.
	sem  chan struct{}
	data *os.File
	lock *os.File

	// crash, if set (tests only), is called at each step of a commit; an
	// error stops the commit there, as a crash would.
	crash func(step string) error
}

func (s *Sink) step(name string) error {
	if s.crash == nil {
		return nil
	}
	return s.crash(name)
}

var (
	_ replicate.DurableSink    = (*Sink)(nil)
	_ replicate.HeartbeatSink  = (*Sink)(nil)
	_ replicate.IdentifiedSink = (*Sink)(nil)
)

// Open opens or creates the sink whose data file is path, and recovers it:
// data past the committed length is cut off. A data file with bytes but no
// state file was not written by a Sink and is refused (ErrCorrupt), as is
// a state file that cannot be decoded or a data file shorter than its
// committed length; the error names the file. Open waits as long as it
// takes for the file lock; the methods that take a context stop waiting
// when it ends.
func Open(path string) (*Sink, error) {
	s := &Sink{path: path, statePath: path + ".state", tmpPath: path + ".state.tmp", lockPath: path + ".lock", sem: make(chan struct{}, 1)}
	lock, err := os.OpenFile(s.lockPath, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("filesink: %w", err)
	}
	data, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("filesink: %w", err)
	}
	s.lock, s.data = lock, data
	err = s.locked(context.Background(), func() error {
		_, err := s.recover()
		return err
	})
	if err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// locked runs f holding the in-process semaphore and the file lock. If
// either cannot be had before ctx ends, it returns ctx's error: the lock
// may be held by a process that is stopped (SIGSTOP, a frozen VM) for
// any length of time.
func (s *Sink) locked(ctx context.Context, f func() error) error {
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.sem }()
	if s.data == nil {
		return ErrClosed
	}
	if err := flockExclusive(ctx, s.lock); err != nil {
		return fmt.Errorf("filesink: lock %s: %w", s.lockPath, err)
	}
	defer syscall.Flock(int(s.lock.Fd()), syscall.LOCK_UN) //nolint:errcheck // closing the file releases it too
	return f()
}

// Polling bounds for a file lock held elsewhere: flock cannot be
// interrupted by a context, so it is tried with LOCK_NB and retried.
const (
	lockPollMin = 500 * time.Microsecond
	lockPollMax = 20 * time.Millisecond
)

// flockExclusive takes an exclusive flock on f, or returns ctx's error.
func flockExclusive(ctx context.Context, f *os.File) error {
	delay := lockPollMin
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			return err
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

// recover reads the state (creating it for a new sink) and cuts the data
// file back to the committed length. The caller holds the locks.
func (s *Sink) recover() (State, error) {
	b, err := os.ReadFile(s.statePath)
	if errors.Is(err, fs.ErrNotExist) {
		st, serr := s.data.Stat()
		if serr != nil {
			return State{}, fmt.Errorf("filesink: %w", serr)
		}
		if st.Size() != 0 {
			return State{}, fmt.Errorf("%w: %s has %d bytes but no state file %s; it was not written by this sink", ErrCorrupt, s.path, st.Size(), s.statePath)
		}
		// Commit the empty state before any data, so that "data without
		// state" always means a foreign file. The new sink gets its
		// identity here: a copy of these files keeps it, a new sink
		// does not.
		fresh := State{SinkID: replicate.NewSinkID()}
		return fresh, s.writeState(fresh)
	}
	if err != nil {
		return State{}, fmt.Errorf("filesink: %w", err)
	}
	state, err := DecodeState(b)
	if err != nil {
		return State{}, fmt.Errorf("filesink: state file %s: %w", s.statePath, err)
	}
	st, err := s.data.Stat()
	if err != nil {
		return State{}, fmt.Errorf("filesink: %w", err)
	}
	switch size := uint64(st.Size()); {
	case size < state.Length:
		return State{}, fmt.Errorf("%w: %s has %d bytes, its state %s commits %d", ErrCorrupt, s.path, size, s.statePath, state.Length)
	case size > state.Length:
		if err := s.data.Truncate(int64(state.Length)); err != nil {
			return State{}, fmt.Errorf("filesink: cut %s back to %d bytes: %w", s.path, state.Length, err)
		}
		if err := s.data.Sync(); err != nil {
			return State{}, fmt.Errorf("filesink: sync %s: %w", s.path, err)
		}
	}
	return state, nil
}

// writeState commits st: temporary file, fsync, rename, directory fsync.
// The temporary file is created afresh (O_EXCL, which follows no
// symbolic link): whatever is at its name, a crash's leftover or a link
// planted to make the sink write elsewhere, is removed, never written
// through.
func (s *Sink) writeState(st State) error {
	if err := os.Remove(s.tmpPath); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("filesink: %w", err)
	}
	f, err := os.OpenFile(s.tmpPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return fmt.Errorf("filesink: %w", err)
	}
	_, err = f.Write(EncodeState(st))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = s.step("state-written")
	}
	if err != nil {
		return fmt.Errorf("filesink: write %s: %w", s.tmpPath, err)
	}
	if err := os.Rename(s.tmpPath, s.statePath); err != nil {
		return fmt.Errorf("filesink: commit %s: %w", s.statePath, err)
	}
	dir, err := os.Open(filepath.Dir(s.statePath))
	if err != nil {
		return fmt.Errorf("filesink: %w", err)
	}
	defer dir.Close()
	if err := dir.Sync(); err != nil {
		return fmt.Errorf("filesink: sync directory of %s: %w", s.statePath, err)
	}
	return nil
}

// Apply appends batch and commits its position under token t, as one
// crash-safe step (see the package doc). A token below the committed one
// fails with an error matching fence.ErrStale and writes nothing.
func (s *Sink) Apply(ctx context.Context, t fence.Token, batch []replicate.Record) error {
	return s.apply(ctx, t, batch, false, nil)
}

// apply is Apply; if conditional, only when the committed position equals
// from, checked after the token under the same lock.
func (s *Sink) apply(ctx context.Context, t fence.Token, batch []replicate.Record, conditional bool, from replicate.Position) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if t == 0 {
		return fence.ErrNoToken
	}
	return s.locked(ctx, func() error {
		st, err := s.recover()
		if err != nil {
			return err
		}
		if t < st.Token {
			return fmt.Errorf("filesink: apply to %s: %w", s.path, fence.Stale(t, st.Token))
		}
		if conditional && !replicate.SamePosition(st.Pos, from) {
			return fmt.Errorf("filesink: apply %d records to %s: %w", len(batch), s.path, replicate.PositionMismatch(from, st.Pos))
		}
		var buf []byte
		for _, r := range batch {
			buf = filelog.AppendRecord(buf, r.Data)
		}
		if len(buf) > 0 {
			if _, err := s.data.WriteAt(buf, int64(st.Length)); err != nil {
				return fmt.Errorf("filesink: write %s at offset %d: %w", s.path, st.Length, err)
			}
			if err := s.step("data-written"); err != nil {
				return err
			}
			if err := s.data.Sync(); err != nil {
				return fmt.Errorf("filesink: sync %s: %w", s.path, err)
			}
			if err := s.step("data-synced"); err != nil {
				return err
			}
			st.Length += uint64(len(buf))
		}
		if len(batch) > 0 {
			st.Pos = batch[len(batch)-1].Pos
		}
		st.Token = t
		return s.writeState(st)
	})
}

// ApplyHeartbeat records hb in the state file under token t, fenced like
// Apply: the sink's State then tells how fresh the target is even when no
// data flows.
func (s *Sink) ApplyHeartbeat(ctx context.Context, t fence.Token, hb replicate.Heartbeat) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if t == 0 {
		return fence.ErrNoToken
	}
	return s.locked(ctx, func() error {
		st, err := s.recover()
		if err != nil {
			return err
		}
		if t < st.Token {
			return fmt.Errorf("filesink: heartbeat to %s: %w", s.path, fence.Stale(t, st.Token))
		}
		st.Token, st.Heartbeat, st.HeartPos = t, hb.Time, hb.Pos
		return s.writeState(st)
	})
}

// Identity returns the sink's ID and the stream it is bound to, from the
// state file (replicate.IdentifiedSink). The ID is made when the state
// file is created, so a copy of the files (a restored backup) keeps it.
func (s *Sink) Identity(ctx context.Context) (replicate.SinkIdentity, error) {
	st, err := s.State(ctx)
	return replicate.SinkIdentity{ID: st.SinkID, Stream: st.Stream}, err
}

// Bind binds the sink to the stream whose checkpoint key is to, if it is
// bound to from or to already, and gives a sink from before identities
// its ID (replicate.IdentifiedSink). It commits like Apply, under the file
// lock: a token below the committed one fails with fence.ErrStale, and t
// is admitted.
func (s *Sink) Bind(ctx context.Context, t fence.Token, from, to string) (replicate.SinkIdentity, error) {
	if err := ctx.Err(); err != nil {
		return replicate.SinkIdentity{}, err
	}
	if t == 0 {
		return replicate.SinkIdentity{}, fence.ErrNoToken
	}
	var id replicate.SinkIdentity
	err := s.locked(ctx, func() error {
		st, err := s.recover()
		if err != nil {
			return err
		}
		if t < st.Token {
			return fmt.Errorf("filesink: bind %s to stream %q: %w", s.path, to, fence.Stale(t, st.Token))
		}
		if st.Stream != from && st.Stream != to {
			return fmt.Errorf("filesink: %s: %w", s.path, replicate.BoundElsewhere(st.SinkID, st.Stream, to))
		}
		if st.SinkID == "" {
			st.SinkID = replicate.NewSinkID()
		}
		st.Stream, st.Token = to, t
		id = replicate.SinkIdentity{ID: st.SinkID, Stream: st.Stream}
		return s.writeState(st)
	})
	return id, err
}

// Position returns the committed position (replicate.DurableSink).
func (s *Sink) Position(ctx context.Context) (replicate.Position, error) {
	st, err := s.State(ctx)
	return st.Pos, err
}

// State returns the committed State, as on disk now.
func (s *Sink) State(ctx context.Context) (State, error) {
	if err := ctx.Err(); err != nil {
		return State{}, err
	}
	var st State
	err := s.locked(ctx, func() (err error) {
		st, err = s.recover()
		return err
	})
	return st, err
}

// Close closes the sink's files. Committed data stays.
func (s *Sink) Close() error {
	s.sem <- struct{}{}
	defer func() { <-s.sem }()
	if s.data == nil {
		return ErrClosed
	}
	err := s.data.Close()
	if lerr := s.lock.Close(); err == nil {
		err = lerr
	}
	s.data, s.lock = nil, nil
	return err
}

// ReadRecords returns the data of every committed record in the sink whose
// data file is path; bytes past the committed length are ignored. It takes
// the sink's file lock, waiting as long as it takes, so it sees whole
// commits only.
func ReadRecords(path string) ([][]byte, error) {
	s, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	var out [][]byte
	err = s.locked(context.Background(), func() error {
		st, err := s.recover()
		if err != nil {
			return err
		}
		b := make([]byte, st.Length)
		if _, err := io.ReadFull(io.NewSectionReader(s.data, 0, int64(st.Length)), b); err != nil {
			return fmt.Errorf("filesink: read %s: %w", path, err)
		}
		for off := 0; off < len(b); {
			data, n, _, err := filelog.DecodeRecord(b[off:])
			if err != nil {
				return fmt.Errorf("%w: %s offset %d: %v", ErrCorrupt, path, off, err)
			}
			out = append(out, data)
			off += n
		}
		return nil
	})
	return out, err
}
