package raftlog

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Log is the durable log of one Raft node: a write-ahead log of entries and
// HardState plus snapshot files in one directory, mirrored in a
// raft.MemoryStorage that serves reads (snapshot data excepted: it stays
// on disk).
//
// Log implements raft.Storage, so it can be passed as raft.Config.Storage.
// Reads (Entries, Term, ...) never touch the disk. Save, CreateSnapshot and
// Compact are safe to call from different goroutines; they are serialised,
// except that CreateSnapshot writes the snapshot body before taking the
// lock so a large snapshot does not hold up Save.
//
// Log does not bound its memory: like raft.MemoryStorage it holds every
// entry after the last compaction. Call CreateSnapshot and Compact.
type Log struct {
	dir       string
	logger    *slog.Logger
	segSize   int64
	snapsKept int

	mem      *raft.MemoryStorage
	lockFile *os.File
	recovery Recovery

	mu        sync.Mutex // serialises writers; guards everything below
	f         *os.File   // the active (last) segment, positioned at size
	size      int64
	segs      []segment // retained segments, oldest first; the last is f
	hs        *raftpb.HardState
	snapIndex uint64 // newest durable snapshot
	snapTerm  uint64
	buf       []byte
	err       error // sticky: set once a write or sync failed
	closed    bool
}

var _ raft.Storage = (*Log)(nil)

// InitialState implements raft.Storage: the recovered (or last saved)
// HardState and the ConfState of the newest snapshot.
func (l *Log) InitialState() (*raftpb.HardState, *raftpb.ConfState, error) {
	return l.mem.InitialState()
}

// Entries implements raft.Storage.
func (l *Log) Entries(lo, hi, maxSize uint64) ([]*raftpb.Entry, error) {
	return l.mem.Entries(lo, hi, maxSize)
}

// Term implements raft.Storage.
func (l *Log) Term(i uint64) (uint64, error) { return l.mem.Term(i) }

// LastIndex implements raft.Storage.
func (l *Log) LastIndex() (uint64, error) { return l.mem.LastIndex() }

// FirstIndex implements raft.Storage.
func (l *Log) FirstIndex() (uint64, error) { return l.mem.FirstIndex() }

// Snapshot implements raft.Storage: the newest durable snapshot. Its
// data is read from the snapshot file on each call (go.etcd.io/raft
// calls it to send a snapshot to a lagging follower): the Log keeps no
// snapshot data in memory. If the file cannot be read it logs why and
// returns raft.ErrSnapshotTemporarilyUnavailable, on which Raft tries
// again later.
func (l *Log) Snapshot() (*raftpb.Snapshot, error) {
	s, err := l.mem.Snapshot()
	if err != nil || raft.IsEmptySnap(s) {
		return s, err
	}
	md := s.GetMetadata()
	path := filepath.Join(l.dir, snapshotName(md.GetIndex(), md.GetTerm()))
	full, err := readSnapshotFile(path, md.GetIndex(), md.GetTerm())
	if err != nil {
		l.logger.Error("raftlog: cannot read the newest snapshot", "file", path, "err", err)
		return nil, raft.ErrSnapshotTemporarilyUnavailable
	}
	full.Metadata = md
	return full, nil
}

// metadataOnly returns snap without its data, for the in-memory log.
func metadataOnly(snap *raftpb.Snapshot) *raftpb.Snapshot {
	return &raftpb.Snapshot{Metadata: snap.GetMetadata()}
}

// Recovered reports what Open found and repaired.
func (l *Log) Recovered() Recovery { return l.recovery }

// Dir returns the directory the Log lives in.
func (l *Log) Dir() string { return l.dir }

// Save makes one raft.Ready durable: pass rd.HardState, rd.Entries and
// rd.Snapshot. Any of them may be nil or empty.
//
// It writes, in this order, the snapshot (to its own file: temporary name,
// fsync, rename, directory fsync), then the entries, then the HardState,
// the last two as one batch in the WAL followed by fdatasync. When Save
// returns nil all of it is durable, so messages that depend on it may be
// sent. A crash during Save loses the whole batch or none of it.
//
// Writing an entry at index i discards every stored entry at index >= i
// (raft overwrites uncommitted entries this way). Entries at or below the
// compaction point are ignored, as raft.MemoryStorage does. A snapshot
// replaces the whole log, as raft.MemoryStorage.ApplySnapshot does.
//
// Save returns an error wrapping ErrInvalid, and writes nothing, if the
// entries would leave a gap or are not consecutive, if an entry has index
// or term zero, or if the HardState's commit index is beyond the last
// entry; raft.ErrSnapOutOfDate if the snapshot is not newer than the
// current one. After an I/O error every write method returns an error
// wrapping ErrFailed; the failed batch may or may not be found on disk by
// the next Open, as with any write whose sync failed.
//
// Save takes no context: a write cannot be abandoned half-way without
// poisoning the log, and fdatasync cannot be interrupted.
func (l *Log) Save(hs *raftpb.HardState, ents []*raftpb.Entry, snap *raftpb.Snapshot) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return err
	}
	hasSnap := snap != nil && !raft.IsEmptySnap(snap)
	ents, writeHS, err := l.checkSave(hs, ents, snap, hasSnap)
	if err != nil || (!hasSnap && len(ents) == 0 && !writeHS) {
		return err
	}
	// Marshal before touching the disk, so that a bad entry writes nothing.
	recs, err := saveRecords(hs, ents, snap, hasSnap, writeHS)
	if err != nil {
		return err
	}
	if hasSnap {
		tmp, final, err := writeSnapshotTemp(l.dir, snap)
		if err != nil {
			return err
		}
		if err := publishSnapshot(l.dir, tmp, final); err != nil {
			// The WAL does not name this snapshot, so a later Open deletes
			// the file as an orphan; but a failed rename or directory sync
			// is an I/O fault, so stop here.
			return l.fail(err)
		}
	}
	if err := l.appendBatch(recs); err != nil {
		return err
	}
	return l.applySaved(hs, ents, snap, hasSnap, writeHS)
}

// checkSave checks a Save's arguments against the log and returns the
// entries to write (those below the first index dropped) and whether the
// HardState changed.
func (l *Log) checkSave(hs *raftpb.HardState, ents []*raftpb.Entry, snap *raftpb.Snapshot, hasSnap bool) ([]*raftpb.Entry, bool, error) {
	first, _ := l.mem.FirstIndex()
	last, _ := l.mem.LastIndex()
	if hasSnap {
		m := snap.GetMetadata()
		if m.GetIndex() <= l.snapIndex {
			return nil, false, fmt.Errorf("raftlog: snapshot at index %d is not newer than the one at %d: %w",
				m.GetIndex(), l.snapIndex, raft.ErrSnapOutOfDate)
		}
		if m.GetTerm() == 0 {
			return nil, false, fmt.Errorf("%w: snapshot at index %d has term 0", ErrInvalid, m.GetIndex())
		}
		first, last = m.GetIndex()+1, m.GetIndex()
	}
	for len(ents) > 0 && ents[0].GetIndex() < first {
		if ents[0].GetIndex() == 0 {
			return nil, false, fmt.Errorf("%w: entry with index 0", ErrInvalid)
		}
		ents = ents[1:]
	}
	newLast := last
	if len(ents) > 0 {
		if i := ents[0].GetIndex(); i > last+1 {
			return nil, false, fmt.Errorf("%w: entry %d would leave a gap after last index %d", ErrInvalid, i, last)
		}
		for k, e := range ents {
			if e.GetIndex() != ents[0].GetIndex()+uint64(k) {
				return nil, false, fmt.Errorf("%w: entry %d follows entry %d", ErrInvalid, e.GetIndex(), ents[0].GetIndex()+uint64(k)-1)
			}
			if e.GetTerm() == 0 {
				return nil, false, fmt.Errorf("%w: entry %d has term 0", ErrInvalid, e.GetIndex())
			}
		}
		newLast = ents[len(ents)-1].GetIndex()
	}
	writeHS := hs != nil && !raft.IsEmptyHardState(hs) && !sameHardState(hs, l.hs)
	if writeHS && hs.GetCommit() > newLast {
		return nil, false, fmt.Errorf("%w: hard state commit %d is beyond last index %d", ErrInvalid, hs.GetCommit(), newLast)
	}
	return ents, writeHS, nil
}

// saveRecords encodes a Save's WAL records: the snapshot marker, the
// entries, the HardState.
func saveRecords(hs *raftpb.HardState, ents []*raftpb.Entry, snap *raftpb.Snapshot, hasSnap, writeHS bool) ([]pendingRecord, error) {
	var recs []pendingRecord
	if hasSnap {
		m := snap.GetMetadata()
		p, err := marshalOpts.Marshal(&raftpb.SnapshotMetadata{Index: new(m.GetIndex()), Term: new(m.GetTerm())})
		if err != nil {
			return nil, fmt.Errorf("raftlog: marshal snapshot metadata: %w", err)
		}
		recs = append(recs, pendingRecord{recSnapshotReset, p})
	}
	for _, e := range ents {
		p, err := marshalOpts.Marshal(e)
		if err != nil {
			return nil, fmt.Errorf("raftlog: marshal entry %d: %w", e.GetIndex(), err)
		}
		if len(p) > MaxRecordSize {
			return nil, fmt.Errorf("%w: entry %d is %d bytes, above MaxRecordSize", ErrInvalid, e.GetIndex(), len(p))
		}
		recs = append(recs, pendingRecord{recEntry, p})
	}
	if writeHS {
		p, err := marshalOpts.Marshal(hs)
		if err != nil {
			return nil, fmt.Errorf("raftlog: marshal hard state: %w", err)
		}
		recs = append(recs, pendingRecord{recHardState, p})
	}
	return recs, nil
}

// applySaved makes a durable Save visible to Raft through the in-memory
// log.
func (l *Log) applySaved(hs *raftpb.HardState, ents []*raftpb.Entry, snap *raftpb.Snapshot, hasSnap, writeHS bool) error {
	if hasSnap {
		if err := l.mem.ApplySnapshot(metadataOnly(snap)); err != nil {
			return l.fail(fmt.Errorf("raftlog: apply snapshot in memory: %w", err))
		}
		l.snapIndex, l.snapTerm = snap.GetMetadata().GetIndex(), snap.GetMetadata().GetTerm()
	}
	if len(ents) > 0 {
		if err := l.mem.Append(ents); err != nil {
			return l.fail(fmt.Errorf("raftlog: append in memory: %w", err))
		}
	}
	if writeHS {
		h := proto.Clone(hs).(*raftpb.HardState)
		l.hs = h
		if err := l.mem.SetHardState(h); err != nil {
			return l.fail(fmt.Errorf("raftlog: set hard state in memory: %w", err))
		}
	}
	if hasSnap {
		l.pruneSnapshots()
	}
	return nil
}

type pendingRecord struct {
	typ     recordType
	payload []byte
}

// appendBatch writes recs and a commit record to the active segment,
// starting a new segment first if the active one is full, and syncs.
// Callers hold l.mu.
func (l *Log) appendBatch(recs []pendingRecord) error {
	if l.size >= l.segSize {
		if err := l.rotate(); err != nil {
			return err
		}
	}
	active := l.segs[len(l.segs)-1]
	seed := segmentSeed(active.seq)
	b := l.buf[:0]
	for _, r := range recs {
		b = appendRecord(b, seed, r.typ, r.payload)
	}
	b = appendRecord(b, seed, recCommit, nil)
	if cap(b) <= 1<<20 {
		l.buf = b[:0] // reuse small buffers only
	}
	if _, err := l.f.Write(b); err != nil {
		return l.fail(fmt.Errorf("raftlog: write %s: %w", active.path, err))
	}
	l.size += int64(len(b))
	if err := fdatasync(l.f); err != nil {
		return l.fail(fmt.Errorf("raftlog: sync %s: %w", active.path, err))
	}
	return nil
}

// rotate closes the active segment (already synced: every batch is) and
// starts the next one, whose header records where the log stands.
func (l *Log) rotate() error {
	last, _ := l.mem.LastIndex()
	term, err := l.mem.Term(last)
	if err != nil {
		return l.fail(fmt.Errorf("raftlog: term of last index %d: %w", last, err))
	}
	h := segmentHeader{
		Seq:       l.segs[len(l.segs)-1].seq + 1,
		PrevIndex: last,
		PrevTerm:  term,
		SnapIndex: l.snapIndex,
		SnapTerm:  l.snapTerm,
	}
	f, sg, size, err := createSegment(l.dir, h, l.hs)
	if err != nil {
		return l.fail(err)
	}
	if err := l.f.Close(); err != nil {
		l.logger.Warn("raftlog: closing full segment", "file", l.segs[len(l.segs)-1].path, "err", err)
	}
	l.f, l.size = f, size
	l.segs = append(l.segs, sg)
	return nil
}

// CreateSnapshot makes a durable snapshot at index with the given
// ConfState (nil keeps the current snapshot's) and application data.
// index must be an applied, hence committed, index: greater
// than the current snapshot's and at most LastIndex. The snapshot file is
// written crash-safely (temporary file, fsync, rename, directory fsync) and
// then recorded in the WAL; a crash in between leaves an orphan file that
// Open deletes. When it returns nil the snapshot is durable and Snapshot
// returns it. It does not discard entries: call Compact. The Log keeps no
// reference to data.
//
// It returns an error wrapping raft.ErrSnapOutOfDate if index is not newer
// than the current snapshot and ErrInvalid if index is beyond the log.
func (l *Log) CreateSnapshot(index uint64, cs *raftpb.ConfState, data []byte) error {
	return l.CreateSnapshotFrom(index, cs, len(data), func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// CreateSnapshotFrom is CreateSnapshot with the data streamed by write,
// which must write exactly size bytes: a large state machine is written
// to the file as it is encoded, never held whole in memory.
func (l *Log) CreateSnapshotFrom(index uint64, cs *raftpb.ConfState, size int, write func(io.Writer) error) error {
	cur, _ := l.mem.Snapshot()
	if index <= cur.GetMetadata().GetIndex() {
		return fmt.Errorf("raftlog: snapshot at index %d is not newer than the one at %d: %w",
			index, cur.GetMetadata().GetIndex(), raft.ErrSnapOutOfDate)
	}
	term, err := l.mem.Term(index)
	if err != nil {
		return fmt.Errorf("%w: snapshot index %d: %w", ErrInvalid, index, err)
	}
	if cs == nil {
		cs = cur.GetMetadata().GetConfState()
	}
	cs = raftpb.EnsureConfState(proto.Clone(cs).(*raftpb.ConfState))
	md := &raftpb.SnapshotMetadata{ConfState: cs, Index: new(index), Term: new(term)}
	// Write the body outside the lock: it may be large and Save should not
	// wait for it.
	tmp, final, err := writeSnapshotStream(l.dir, md, size, write)
	if err != nil {
		return err
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		os.Remove(tmp)
		return err
	}
	if index <= l.snapIndex {
		os.Remove(tmp)
		return fmt.Errorf("raftlog: snapshot at index %d is not newer than the one at %d: %w",
			index, l.snapIndex, raft.ErrSnapOutOfDate)
	}
	if t, err := l.mem.Term(index); err != nil || t != term {
		os.Remove(tmp)
		return fmt.Errorf("%w: entry %d changed while its snapshot was written (term %d, now %d, %v)",
			ErrInvalid, index, term, t, err)
	}
	if err := publishSnapshot(l.dir, tmp, final); err != nil {
		return l.fail(err)
	}
	p, err := marshalOpts.Marshal(&raftpb.SnapshotMetadata{Index: new(index), Term: new(term)})
	if err != nil {
		return fmt.Errorf("raftlog: marshal snapshot metadata: %w", err)
	}
	if err := l.appendBatch([]pendingRecord{{recSnapshotLocal, p}}); err != nil {
		return err
	}
	if _, err := l.mem.CreateSnapshot(index, cs, nil); err != nil {
		return l.fail(fmt.Errorf("raftlog: snapshot in memory: %w", err))
	}
	l.snapIndex, l.snapTerm = index, term
	l.pruneSnapshots()
	return nil
}

// Compact discards the entries up to and including index, from memory
// and, where whole WAL segments are covered, from disk. index must not be
// above the current snapshot's index (ErrInvalid otherwise), so that
// everything discarded is in a durable snapshot. Compacting at or below
// the current compaction point only retries the clean-up and returns nil
// (raft.MemoryStorage returns raft.ErrCompacted there).
//
// Segment files are removed oldest first; a crash part-way leaves extra
// segments, which Open reads and ignores.
func (l *Log) Compact(index uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return err
	}
	if index > l.snapIndex {
		return fmt.Errorf("%w: compact index %d is above the snapshot index %d", ErrInvalid, index, l.snapIndex)
	}
	if first, _ := l.mem.FirstIndex(); index >= first {
		if err := l.mem.Compact(index); err != nil {
			return fmt.Errorf("raftlog: compact in memory: %w", err)
		}
	}
	// Segment k holds no live entry above the PrevIndex of segment k+1
	// (an entry written in k and still live was there when k+1 began), so
	// k is covered once that PrevIndex <= index.
	removed := 0
	var errs []error
	for len(l.segs) > 1 && l.segs[1].prevIndex <= index {
		if err := os.Remove(l.segs[0].path); err != nil {
			errs = append(errs, fmt.Errorf("raftlog: remove segment: %w", err))
			break
		}
		l.segs = l.segs[1:]
		removed++
	}
	if removed > 0 {
		if err := syncDir(l.dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// pruneSnapshots deletes snapshot files beyond the newest snapsKept.
// Failures are logged, not returned: an extra file is harmless.
func (l *Log) pruneSnapshots() {
	snaps, err := listSnapshots(l.dir)
	if err != nil {
		l.logger.Warn("raftlog: listing snapshots for pruning", "dir", l.dir, "err", err)
		return
	}
	for i := l.snapsKept; i < len(snaps); i++ {
		if err := os.Remove(snaps[i].path); err != nil {
			l.logger.Warn("raftlog: removing old snapshot", "file", snaps[i].path, "err", err)
		}
	}
}

// Close closes the WAL and releases the directory lock. Everything Save
// acknowledged is already durable, so Close does not sync. The Storage
// methods keep answering from memory after Close; the write methods return
// ErrClosed. Close is idempotent.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	err := l.f.Close()
	if lerr := l.lockFile.Close(); err == nil {
		err = lerr
	}
	if err != nil {
		return fmt.Errorf("raftlog: close: %w", err)
	}
	return nil
}

func (l *Log) usable() error {
	if l.closed {
		return ErrClosed
	}
	return l.err
}

// fail makes err sticky: after a failed write or sync the file's contents
// are unknown, so nothing more may be appended.
func (l *Log) fail(err error) error {
	l.err = fmt.Errorf("%w: %w", ErrFailed, err)
	l.logger.Error("raftlog: write failed; reopen the log to recover", "dir", l.dir, "err", err)
	return l.err
}

func sameHardState(a, b *raftpb.HardState) bool {
	return a.GetTerm() == b.GetTerm() && a.GetVote() == b.GetVote() && a.GetCommit() == b.GetCommit()
}

type snapFile struct {
	index, term uint64
	path        string
}

// listSnapshots returns the snapshot files in dir, newest first.
func listSnapshots(dir string) ([]snapFile, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []snapFile
	for _, de := range des {
		if i, t, ok := parseName(de.Name(), ".snap"); ok && de.Type().IsRegular() {
			out = append(out, snapFile{index: i, term: t, path: filepath.Join(dir, de.Name())})
		}
	}
	sort.Slice(out, func(a, b int) bool {
		if out[a].index != out[b].index {
			return out[a].index > out[b].index
		}
		return out[a].term > out[b].term
	})
	return out, nil
}
