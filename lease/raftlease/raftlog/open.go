package raftlog

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

const lockName = "LOCK"

// Open opens the Log in dir, creating dir and an empty log if there is
// none, and recovers the state to restart from: the newest usable
// snapshot, the entries after it and the last HardState, all available
// through the raft.Storage methods. Recovered says what recovery found.
//
// A torn write at the end of the last segment is cut off and reported (a
// warning on the logger and Recovered().Torn). Any other damage makes Open
// fail with a *CorruptError (wrapping ErrCorrupt) that names the file and
// byte offset; Open never starts from an empty log because of damage.
// The full rules are in the package documentation.
//
// The directory is locked against a second Open until Close.
func Open(dir string, opts ...Option) (*Log, error) {
	o := defaultOptions()
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if err := mkdirAllSync(dir); err != nil {
		return nil, err
	}
	lf, err := lockDir(dir, filepath.Join(dir, lockName))
	if err != nil {
		return nil, err
	}
	l := &Log{
		dir:       dir,
		logger:    o.logger,
		segSize:   o.segSize,
		snapsKept: o.snapsKept,
		mem:       raft.NewMemoryStorage(),
		lockFile:  lf,
		hs:        &raftpb.HardState{},
	}
	if err := l.recover(); err != nil {
		lf.Close()
		return nil, err
	}
	return l, nil
}

// mkdirAllSync creates dir and any missing parents, and syncs the parent
// of each directory it created, so that a log acknowledged by Save cannot
// vanish with its directory's name in a crash.
func mkdirAllSync(dir string) error {
	var missing []string
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil || !os.IsNotExist(err) {
			break
		}
		missing = append(missing, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("raftlog: create %s: %w", dir, err)
	}
	for _, d := range missing {
		if err := syncDir(filepath.Dir(d)); err != nil {
			return err
		}
	}
	return nil
}

// walEvent is one decoded, committed WAL record, with where it came from.
type walEvent struct {
	typ   recordType
	ent   *raftpb.Entry
	hs    *raftpb.HardState
	index uint64 // snapshot records
	term  uint64
	hdr   segmentHeader
	path  string
	off   int64
}

// recover rebuilds the state from the directory, following the rules of
// the package documentation. Repairs (removing temporary files and orphan
// snapshots, cutting a torn tail) are made only once the whole state has
// been checked, so that an Open that fails changes nothing.
func (l *Log) recover() error {
	temps, segs, err := l.listDir()
	if err != nil {
		return err
	}
	snaps, err := listSnapshots(l.dir)
	if err != nil {
		return fmt.Errorf("raftlog: list snapshots in %s: %w", l.dir, err)
	}
	if len(segs) == 0 {
		if len(snaps) > 0 {
			return corruptf(snaps[0].path, 0, "snapshot files exist but there is no WAL segment in %s", l.dir)
		}
		if err := l.removeTemps(temps); err != nil {
			return err
		}
		return l.initEmpty()
	}
	w, err := readWAL(segs)
	if err != nil {
		return err
	}
	snap, orphans, err := l.chooseSnapshot(snaps, w.knownIndex, w.knownTerm)
	if err != nil {
		return err
	}
	rp, hs, err := replayWAL(snap, w)
	if err != nil {
		return err
	}
	if err := l.repair(temps, orphans, w.last.torn); err != nil {
		return err
	}
	if err := l.install(snap, rp, hs); err != nil {
		return err
	}
	if err := l.openActive(segs); err != nil {
		return err
	}
	l.recovery.SnapshotIndex, l.recovery.SnapshotTerm = rp.snapIndex, rp.snapTerm
	l.recovery.LastIndex = rp.lastIndex()
	l.recovery.Segments = len(segs)
	l.logger.Info("raftlog: recovered", "dir", l.dir, "snapshot_index", rp.snapIndex,
		"last_index", rp.lastIndex(), "commit", hs.GetCommit(), "segments", len(segs))
	return nil
}

// listDir returns the temporary files left by a crash and the WAL
// segments in dir, the segments sorted by sequence number and checked to
// follow one another without a gap.
func (l *Log) listDir() (temps []string, segs []segment, err error) {
	des, err := os.ReadDir(l.dir)
	if err != nil {
		return nil, nil, fmt.Errorf("raftlog: read %s: %w", l.dir, err)
	}
	for _, de := range des {
		name := de.Name()
		path := filepath.Join(l.dir, name)
		switch {
		case strings.HasSuffix(name, ".tmp"):
			// A crash while a segment or snapshot was being created.
			temps = append(temps, path)
		case strings.HasSuffix(name, ".wal"):
			seq, prev, ok := parseName(name, ".wal")
			if !ok {
				return nil, nil, corruptf(path, 0, "not a valid segment name")
			}
			segs = append(segs, segment{seq: seq, prevIndex: prev, path: path})
		}
	}
	sort.Slice(segs, func(a, b int) bool { return segs[a].seq < segs[b].seq })
	for k := 1; k < len(segs); k++ {
		if segs[k].seq != segs[k-1].seq+1 {
			return nil, nil, corruptf(segs[k].path, 0, "segment %d is missing: %s is followed by %s",
				segs[k-1].seq+1, filepath.Base(segs[k-1].path), filepath.Base(segs[k].path))
		}
	}
	return temps, segs, nil
}

// walContents is what the first pass over the WAL found.
type walContents struct {
	events                []walEvent   // every committed record, segment headers included
	knownIndex, knownTerm uint64       // the newest snapshot the WAL acknowledges
	last                  *segmentScan // the scan of the last segment (its torn tail, its end)
	lastPath              string
}

// readWAL reads and decodes every segment, finding a torn tail in the
// last one; it repairs nothing.
func readWAL(segs []segment) (*walContents, error) {
	w := &walContents{}
	know := func(i, t uint64) {
		if i > w.knownIndex {
			w.knownIndex, w.knownTerm = i, t
		}
	}
	for k, sg := range segs {
		last := k == len(segs)-1
		b, err := os.ReadFile(sg.path)
		if err != nil {
			return nil, fmt.Errorf("raftlog: read %s: %w", sg.path, err)
		}
		sc, err := scanSegment(sg.path, b, sg.seq, last)
		if err != nil {
			return nil, err
		}
		if sc.header.PrevIndex != sg.prevIndex {
			return nil, corruptf(sg.path, 0, "segment header says previous index %d, name says %d", sc.header.PrevIndex, sg.prevIndex)
		}
		know(sc.header.SnapIndex, sc.header.SnapTerm)
		w.events = append(w.events, walEvent{typ: recSegment, hdr: sc.header, path: sg.path})
		for _, r := range sc.records {
			ev, err := decodeEvent(sg.path, r)
			if err != nil {
				return nil, err
			}
			if ev.typ == recSnapshotReset || ev.typ == recSnapshotLocal {
				know(ev.index, ev.term)
			}
			w.events = append(w.events, ev)
		}
		if last {
			w.last, w.lastPath = sc, sg.path
		}
	}
	return w, nil
}

// replayWAL replays the WAL's records on top of snap and returns the log
// and the HardState to restart from.
func replayWAL(snap *raftpb.Snapshot, w *walContents) (*replay, *raftpb.HardState, error) {
	rp := &replay{snapIndex: snap.GetMetadata().GetIndex(), snapTerm: snap.GetMetadata().GetTerm(), hs: &raftpb.HardState{}}
	for _, ev := range w.events {
		if err := rp.apply(ev); err != nil {
			return nil, nil, err
		}
	}
	hs := rp.hs
	if hs.GetCommit() < rp.snapIndex {
		// A snapshot holds only committed state; its index is committed
		// even if the hard state saying so was not written yet.
		hs = proto.Clone(hs).(*raftpb.HardState)
		hs.Commit = new(rp.snapIndex)
	}
	if hs.GetCommit() > rp.lastIndex() {
		return nil, nil, corruptf(w.lastPath, w.last.end, "hard state commit %d is beyond the last log index %d", hs.GetCommit(), rp.lastIndex())
	}
	return rp, hs, nil
}

// repair removes the temporary files and orphan snapshots and cuts the
// torn tail, once recovery has checked everything else.
func (l *Log) repair(temps []string, orphans []SkippedFile, torn *TornTail) error {
	if err := l.removeTemps(temps); err != nil {
		return err
	}
	for _, o := range orphans {
		if err := os.Remove(o.File); err != nil {
			return fmt.Errorf("raftlog: remove orphan snapshot %s: %w", o.File, err)
		}
		l.logger.Warn("raftlog: removed snapshot the WAL does not acknowledge", "file", o.File, "reason", o.Reason)
	}
	l.recovery.SkippedSnapshots = append(l.recovery.SkippedSnapshots, orphans...)
	if torn == nil {
		return nil
	}
	if err := truncateFile(torn.File, torn.Offset); err != nil {
		return err
	}
	l.recovery.Torn = torn
	l.logger.Warn("raftlog: cut a torn write off the end of the WAL",
		"file", torn.File, "offset", torn.Offset, "dropped_bytes", torn.Dropped, "reason", torn.Reason)
	return nil
}

// install loads the recovered snapshot, entries and HardState into the
// in-memory log that serves raft.Storage.
func (l *Log) install(snap *raftpb.Snapshot, rp *replay, hs *raftpb.HardState) error {
	if rp.snapIndex > 0 {
		if err := l.mem.ApplySnapshot(metadataOnly(snap)); err != nil {
			return fmt.Errorf("raftlog: apply snapshot in memory: %w", err)
		}
	}
	if err := l.mem.Append(rp.ents); err != nil {
		return fmt.Errorf("raftlog: append in memory: %w", err)
	}
	if err := l.mem.SetHardState(hs); err != nil {
		return fmt.Errorf("raftlog: set hard state in memory: %w", err)
	}
	l.hs = hs
	l.snapIndex, l.snapTerm = rp.snapIndex, rp.snapTerm
	return nil
}

// openActive opens the last segment for appending, at its end.
func (l *Log) openActive(segs []segment) error {
	lastPath := segs[len(segs)-1].path
	f, err := os.OpenFile(lastPath, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("raftlog: open %s: %w", lastPath, err)
	}
	size, err := f.Seek(0, 2)
	if err != nil {
		f.Close()
		return fmt.Errorf("raftlog: seek %s: %w", lastPath, err)
	}
	l.f, l.size, l.segs = f, size, segs
	return nil
}

func (l *Log) removeTemps(temps []string) error {
	for _, path := range temps {
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("raftlog: remove leftover %s: %w", path, err)
		}
		l.recovery.RemovedTemp = append(l.recovery.RemovedTemp, path)
		l.logger.Warn("raftlog: removed temporary file left by a crash", "file", path)
	}
	return nil
}

func (l *Log) initEmpty() error {
	f, sg, size, err := createSegment(l.dir, segmentHeader{}, nil)
	if err != nil {
		return err
	}
	l.f, l.size, l.segs = f, size, []segment{sg}
	return nil
}

// chooseSnapshot returns the newest valid snapshot file not newer than the
// newest snapshot the WAL acknowledges (known), and the files newer than
// that: orphans of a crash inside Save or CreateSnapshot, for the caller to
// delete. A damaged file is skipped in favour of an older one; whether the
// WAL reaches back far enough is checked by the replay. With no usable
// file where one is needed, it fails.
func (l *Log) chooseSnapshot(snaps []snapFile, knownIndex, knownTerm uint64) (*raftpb.Snapshot, []SkippedFile, error) {
	var orphans []SkippedFile
	var firstErr error
	for _, sf := range snaps {
		if sf.index > knownIndex || (sf.index == knownIndex && sf.term != knownTerm) {
			orphans = append(orphans, SkippedFile{File: sf.path,
				Reason: fmt.Sprintf("orphan: the WAL acknowledges no snapshot past index %d term %d", knownIndex, knownTerm)})
			continue
		}
		s, err := readSnapshotFile(sf.path, sf.index, sf.term)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			l.recovery.SkippedSnapshots = append(l.recovery.SkippedSnapshots, SkippedFile{File: sf.path, Reason: err.Error()})
			l.logger.Warn("raftlog: skipping damaged snapshot", "file", sf.path, "err", err)
			continue
		}
		if sf.index < knownIndex {
			l.logger.Warn("raftlog: falling back to an older snapshot", "file", sf.path, "wanted_index", knownIndex)
		}
		return s, orphans, nil
	}
	if knownIndex == 0 {
		return raftpb.EnsureSnapshot(nil), orphans, nil
	}
	if firstErr != nil {
		return nil, nil, fmt.Errorf("raftlog: no usable snapshot for index %d: %w", knownIndex, firstErr)
	}
	return nil, nil, corruptf(filepath.Join(l.dir, snapshotName(knownIndex, knownTerm)), 0,
		"the WAL acknowledges a snapshot at index %d term %d but the file is missing", knownIndex, knownTerm)
}

func decodeEvent(path string, r walRecord) (walEvent, error) {
	ev := walEvent{typ: r.typ, path: path, off: r.off}
	switch r.typ {
	case recEntry:
		e := new(raftpb.Entry)
		if err := proto.Unmarshal(r.payload, e); err != nil {
			return ev, corruptf(path, r.off, "entry record: %v", err)
		}
		if e.GetIndex() == 0 || e.GetTerm() == 0 {
			return ev, corruptf(path, r.off, "entry record with index %d term %d", e.GetIndex(), e.GetTerm())
		}
		ev.ent = e
	case recHardState:
		hs := new(raftpb.HardState)
		if err := proto.Unmarshal(r.payload, hs); err != nil {
			return ev, corruptf(path, r.off, "hard state record: %v", err)
		}
		ev.hs = hs
	case recSnapshotReset, recSnapshotLocal:
		m := new(raftpb.SnapshotMetadata)
		if err := proto.Unmarshal(r.payload, m); err != nil {
			return ev, corruptf(path, r.off, "%v record: %v", r.typ, err)
		}
		if m.GetIndex() == 0 || m.GetTerm() == 0 {
			return ev, corruptf(path, r.off, "%v record with index %d term %d", r.typ, m.GetIndex(), m.GetTerm())
		}
		ev.index, ev.term = m.GetIndex(), m.GetTerm()
	default:
		return ev, corruptf(path, r.off, "unexpected %v record", r.typ)
	}
	return ev, nil
}

// replay rebuilds the log from a snapshot and the WAL records in order.
//
// Invariant: ents[k].Index == snapIndex+1+k. Entries at or below the
// snapshot are committed and so equal to what the snapshot covers; a
// record at such an index only truncates what follows the snapshot, the
// way writing it truncated the log at the time.
type replay struct {
	snapIndex, snapTerm uint64
	ents                []*raftpb.Entry
	hs                  *raftpb.HardState
}

func (r *replay) lastIndex() uint64 { return r.snapIndex + uint64(len(r.ents)) }

func (r *replay) termAt(i uint64) (uint64, bool) {
	switch {
	case i == r.snapIndex:
		return r.snapTerm, true
	case i > r.snapIndex && i <= r.lastIndex():
		return r.ents[i-r.snapIndex-1].GetTerm(), true
	}
	return 0, false
}

func (r *replay) apply(ev walEvent) error {
	switch ev.typ {
	case recSegment:
		// When the segment began the log ended at PrevIndex. If that is
		// past the snapshot the replay must have reached exactly there;
		// if not, the replay holds nothing past the snapshot.
		h := ev.hdr
		if h.PrevIndex < r.snapIndex {
			if len(r.ents) != 0 {
				return corruptf(ev.path, 0, "segment begins at index %d but replay reached %d", h.PrevIndex, r.lastIndex())
			}
			return nil
		}
		if r.lastIndex() != h.PrevIndex {
			return corruptf(ev.path, 0, "segment begins after index %d but the log before it ends at %d (entries missing)",
				h.PrevIndex, r.lastIndex())
		}
		if t, _ := r.termAt(h.PrevIndex); t != h.PrevTerm && h.PrevIndex != 0 {
			return corruptf(ev.path, 0, "segment begins after index %d term %d but that entry has term %d", h.PrevIndex, h.PrevTerm, t)
		}
		if h.SnapIndex == r.snapIndex && h.SnapIndex != 0 && h.SnapTerm != r.snapTerm {
			return corruptf(ev.path, 0, "segment names snapshot %d term %d but the snapshot has term %d", h.SnapIndex, h.SnapTerm, r.snapTerm)
		}
	case recEntry:
		i := ev.ent.GetIndex()
		if i <= r.snapIndex {
			r.ents = r.ents[:0:0]
			return nil
		}
		if i > r.lastIndex()+1 {
			return corruptf(ev.path, ev.off, "entry %d follows last index %d (entries missing)", i, r.lastIndex())
		}
		r.ents = append(r.ents[:i-r.snapIndex-1], ev.ent)
	case recHardState:
		r.hs = ev.hs
	case recSnapshotReset:
		switch {
		case ev.index > r.snapIndex:
			return corruptf(ev.path, ev.off, "the log restarts at snapshot %d term %d, which has no usable file", ev.index, ev.term)
		case ev.index == r.snapIndex && ev.term != r.snapTerm:
			return corruptf(ev.path, ev.off, "the log restarts at snapshot %d term %d, the file has term %d", ev.index, ev.term, r.snapTerm)
		}
		r.ents = r.ents[:0:0]
	case recSnapshotLocal:
		if ev.index < r.snapIndex {
			return nil
		}
		if t, ok := r.termAt(ev.index); !ok || t != ev.term {
			return corruptf(ev.path, ev.off, "snapshot record at index %d term %d does not match the log (term %d, last index %d)",
				ev.index, ev.term, t, r.lastIndex())
		}
	}
	return nil
}

// truncateFile cuts path to size and makes the cut durable.
func truncateFile(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("raftlog: open %s to cut torn tail: %w", path, err)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return fmt.Errorf("raftlog: cut torn tail of %s at %d: %w", path, size, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("raftlog: sync %s: %w", path, err)
	}
	return f.Close()
}
