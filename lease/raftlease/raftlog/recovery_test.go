package raftlog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
)

type recInfo struct {
	typ recordType
	off int64
	n   int64
}

// recordsOf decodes the valid records of a segment file in order.
func recordsOf(t tester, path string) []recInfo {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	seq, _, ok := parseName(filepath.Base(path), ".wal")
	if !ok {
		t.Fatalf("bad segment name %s", path)
	}
	var out []recInfo
	for off := 0; off < len(b); {
		typ, _, n, err := decodeRecord(b[off:], segmentSeed(seq))
		if err != nil {
			t.Fatalf("%s offset %d: %v", path, off, err)
		}
		out = append(out, recInfo{typ, int64(off), int64(n)})
		off += n
	}
	return out
}

// commitEnds returns the end offset of every batch in a segment file.
func commitEnds(t tester, path string) []int64 {
	t.Helper()
	var out []int64
	for _, r := range recordsOf(t, path) {
		if r.typ == recCommit {
			out = append(out, r.off+r.n)
		}
	}
	return out
}

func mutateFile(t tester, path string, fn func([]byte) []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, fn(b), 0o600); err != nil {
		t.Fatal(err)
	}
}

// threeBatches writes three Saves and returns the state after the second
// (what survives losing the third) and after the third.
func threeBatches(t *testing.T, dir string) (afterTwo, afterThree state) {
	t.Helper()
	l := openT(t, dir)
	mustSave(t, l, hardState(1, 1, 0), ents(1, 3, 1), nil)
	mustSave(t, l, hardState(1, 1, 3), ents(4, 6, 1), nil)
	afterTwo = stateOf(t, l)
	mustSave(t, l, hardState(2, 2, 5), ents(6, 8, 2), nil)
	afterThree = stateOf(t, l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return afterTwo, afterThree
}

func TestTornTail(t *testing.T) {
	for _, tc := range []struct {
		name string
		// damage changes the last segment; recs are its records and
		// prev is where the last batch begins.
		damage   func(b []byte, recs []recInfo, prev int64) []byte
		lostLast bool // the third Save is lost
	}{
		{"short length", func(b []byte, recs []recInfo, prev int64) []byte { return b[:prev+3] }, true},
		{"short payload", func(b []byte, recs []recInfo, prev int64) []byte { return b[:prev+recordHeaderSize+4] }, true},
		{"batch without commit", func(b []byte, recs []recInfo, prev int64) []byte { return b[:recs[len(recs)-1].off] }, true},
		{"half a commit record", func(b []byte, recs []recInfo, prev int64) []byte { return b[:len(b)-4] }, true},
		{"bad CRC on the last record", func(b []byte, recs []recInfo, prev int64) []byte {
			b[len(b)-1] ^= 0xff // the commit record's CRC
			return b
		}, true},
		{"bad CRC on the last record, zeros after", func(b []byte, recs []recInfo, prev int64) []byte {
			last := recs[len(recs)-2] // the hard state; cut the commit
			b = b[:last.off+last.n]
			b[last.off+recordHeaderSize] ^= 0x01
			return append(b, make([]byte, 512)...)
		}, true},
		{"zeros after the last batch", func(b []byte, recs []recInfo, prev int64) []byte {
			return append(b, make([]byte, 4096)...)
		}, false},
		{"garbage after the last batch", func(b []byte, recs []recInfo, prev int64) []byte {
			return append(b, []byte("\x02\x10\x00\x00\x00not a record at all")...)
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			afterTwo, afterThree := threeBatches(t, dir)
			segs := segmentFiles(t, dir)
			path := segs[len(segs)-1]
			recs := recordsOf(t, path)
			ends := commitEnds(t, path)
			prev := ends[len(ends)-2]
			mutateFile(t, path, func(b []byte) []byte { return tc.damage(b, recs, prev) })
			sizeDamaged := fileSize(t, path)

			var logs bytes.Buffer
			l := openT(t, dir, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
			r := l.Recovered()
			if r.Torn == nil {
				t.Fatalf("torn tail not reported: %+v", r)
			}
			if msg := logs.String(); !strings.Contains(msg, "level=WARN") || !strings.Contains(msg, "torn") || !strings.Contains(msg, path) {
				t.Fatalf("no warning naming %s logged: %q", path, msg)
			}
			wantOff := ends[len(ends)-1]
			want := afterThree
			if tc.lostLast {
				wantOff, want = prev, afterTwo
			}
			if r.Torn.File != path || r.Torn.Offset != wantOff || r.Torn.Dropped != sizeDamaged-wantOff {
				t.Fatalf("Torn = %+v, want file %s offset %d dropped %d", r.Torn, path, wantOff, sizeDamaged-wantOff)
			}
			if got := fileSize(t, path); got != wantOff {
				t.Fatalf("segment is %d bytes after recovery, want %d", got, wantOff)
			}
			diffState(t, stateOf(t, l), want)

			// Appends work after the cut, and the next restart is clean.
			last := want.Last
			mustSave(t, l, hardState(3, 3, last), ents(last+1, last+2, 3), nil)
			want = stateOf(t, l)
			l.Close()
			l2 := openT(t, dir)
			if !l2.Recovered().Clean() {
				t.Fatalf("second restart not clean: %+v", l2.Recovered())
			}
			diffState(t, stateOf(t, l2), want)
		})
	}
}

// wantCorrupt opens dir, expects a *CorruptError for file at offset, and
// checks that the failed Open changed no file.
func wantCorrupt(t *testing.T, dir, file string, offset int64) *CorruptError {
	t.Helper()
	before := dirContents(t, dir)
	l, err := Open(dir, WithLogger(testLogger(t)))
	if err == nil {
		l.Close()
		t.Fatalf("Open succeeded on a damaged log (recovered %+v)", l.Recovered())
	}
	var ce *CorruptError
	if !errors.Is(err, ErrCorrupt) || !errors.As(err, &ce) {
		t.Fatalf("Open: %v, want a *CorruptError", err)
	}
	if ce.File != file || (offset >= 0 && ce.Offset != offset) {
		t.Fatalf("Open: %v\nwant file %s offset %d", err, file, offset)
	}
	msg := err.Error()
	if !strings.Contains(msg, file) || !strings.Contains(msg, fmt.Sprintf("offset %d", ce.Offset)) {
		t.Fatalf("message %q does not name file and offset", msg)
	}
	if after := dirContents(t, dir); after != before {
		t.Fatalf("a refused Open changed the directory:\nbefore %s\nafter  %s", before, after)
	}
	return ce
}

// dirContents summarises the names, sizes and checksums of dir's files.
func dirContents(t *testing.T, dir string) string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	for _, de := range des {
		if de.Name() == lockName {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, de.Name()))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&sb, "%s:%d:%08x ", de.Name(), len(b), crc32.Checksum(b, castagnoli))
	}
	return sb.String()
}

func TestCorruptionRefused(t *testing.T) {
	t.Run("bad record followed by valid data", func(t *testing.T) {
		dir := t.TempDir()
		threeBatches(t, dir)
		path := segmentFiles(t, dir)[0]
		recs := recordsOf(t, path)
		victim := recs[3] // an entry of the first batch
		mutateFile(t, path, func(b []byte) []byte { b[victim.off+recordHeaderSize+2] ^= 0x20; return b })
		wantCorrupt(t, dir, path, victim.off)
	})
	t.Run("bad length followed by valid data", func(t *testing.T) {
		dir := t.TempDir()
		threeBatches(t, dir)
		path := segmentFiles(t, dir)[0]
		victim := recordsOf(t, path)[4]
		mutateFile(t, path, func(b []byte) []byte { b[victim.off+3] = 0x7f; return b })
		wantCorrupt(t, dir, path, victim.off)
	})
	t.Run("damage in a segment that is not the last", func(t *testing.T) {
		dir := t.TempDir()
		l := openT(t, dir, WithSegmentSize(4096))
		for i := uint64(1); i <= 60; i++ {
			mustSave(t, l, hardState(1, 1, i-1), []*raftpb.Entry{ent(i, 1, strings.Repeat("x", 200))}, nil)
		}
		l.Close()
		segs := segmentFiles(t, dir)
		if len(segs) < 3 {
			t.Fatalf("want 3+ segments, have %d", len(segs))
		}
		recs := recordsOf(t, segs[1])
		last := recs[len(recs)-1] // the final commit: bad CRC, nothing after
		mutateFile(t, segs[1], func(b []byte) []byte { b[last.off+6] ^= 1; return b })
		wantCorrupt(t, dir, segs[1], last.off)
	})
	t.Run("truncated segment that is not the last", func(t *testing.T) {
		dir := t.TempDir()
		l := openT(t, dir, WithSegmentSize(4096))
		for i := uint64(1); i <= 60; i++ {
			mustSave(t, l, hardState(1, 1, i-1), []*raftpb.Entry{ent(i, 1, strings.Repeat("x", 200))}, nil)
		}
		l.Close()
		segs := segmentFiles(t, dir)
		recs := recordsOf(t, segs[0])
		mutateFile(t, segs[0], func(b []byte) []byte { return b[:len(b)-5] })
		wantCorrupt(t, dir, segs[0], recs[len(recs)-1].off)
	})
	t.Run("missing segment", func(t *testing.T) {
		dir := t.TempDir()
		l := openT(t, dir, WithSegmentSize(4096))
		for i := uint64(1); i <= 60; i++ {
			mustSave(t, l, hardState(1, 1, i-1), []*raftpb.Entry{ent(i, 1, strings.Repeat("x", 200))}, nil)
		}
		l.Close()
		segs := segmentFiles(t, dir)
		if err := os.Remove(segs[1]); err != nil {
			t.Fatal(err)
		}
		ce := wantCorrupt(t, dir, segs[2], 0)
		if !strings.Contains(ce.Reason, "segment 1 is missing") {
			t.Fatalf("reason %q does not name the missing segment", ce.Reason)
		}
	})
	t.Run("first segment missing after compaction would leave a gap", func(t *testing.T) {
		dir := t.TempDir()
		l := openT(t, dir, WithSegmentSize(4096))
		for i := uint64(1); i <= 60; i++ {
			mustSave(t, l, hardState(1, 1, i-1), []*raftpb.Entry{ent(i, 1, strings.Repeat("x", 200))}, nil)
		}
		l.Close()
		segs := segmentFiles(t, dir)
		if err := os.Remove(segs[0]); err != nil {
			t.Fatal(err)
		}
		wantCorrupt(t, dir, segs[1], 0)
	})
	t.Run("bad segment header", func(t *testing.T) {
		dir := t.TempDir()
		threeBatches(t, dir)
		path := segmentFiles(t, dir)[0]
		mutateFile(t, path, func(b []byte) []byte { b[recordHeaderSize] = 'X'; return b })
		wantCorrupt(t, dir, path, 0)
	})
	t.Run("a refused Open repairs nothing", func(t *testing.T) {
		dir := t.TempDir()
		snapshotted(t, dir, false, 0)
		segs := segmentFiles(t, dir)
		// A torn tail, a leftover temporary file, an orphan snapshot...
		mutateFile(t, segs[len(segs)-1], func(b []byte) []byte { return append(b, 2, 9, 9) })
		if err := os.WriteFile(filepath.Join(dir, "x.snap.123.tmp"), []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
		orphan := raftpb.EnsureSnapshot(&raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{Index: new(uint64(99)), Term: new(uint64(1))}})
		tmp, final, err := writeSnapshotTemp(dir, orphan)
		if err != nil {
			t.Fatal(err)
		}
		if err := publishSnapshot(dir, tmp, final); err != nil {
			t.Fatal(err)
		}
		// ...and the snapshot the WAL needs is damaged: nothing may change.
		path := filepath.Join(dir, snapshotName(10, 1))
		mutateFile(t, path, func(b []byte) []byte { b[0] = 'X'; return b })
		wantCorrupt(t, dir, path, 0)
	})
	t.Run("snapshot files but no WAL", func(t *testing.T) {
		dir := t.TempDir()
		l := openT(t, dir)
		mustSave(t, l, hardState(1, 1, 2), ents(1, 2, 1), nil)
		if err := l.CreateSnapshot(2, nil, []byte("s")); err != nil {
			t.Fatal(err)
		}
		l.Close()
		for _, s := range segmentFiles(t, dir) {
			os.Remove(s)
		}
		wantCorrupt(t, dir, filepath.Join(dir, snapshotName(2, 1)), 0)
	})
}

// snapshotted builds a log with a snapshot at 10 and, if second, one at 40,
// compacting to compact (0: no compaction).
func snapshotted(t *testing.T, dir string, second bool, compact uint64) state {
	t.Helper()
	l := openT(t, dir, WithSegmentSize(4096))
	for i := uint64(1); i <= 60; i++ {
		mustSave(t, l, hardState(1, 1, i), []*raftpb.Entry{ent(i, 1, strings.Repeat("y", 150))}, nil)
	}
	if err := l.CreateSnapshot(10, &raftpb.ConfState{Voters: []uint64{1}}, []byte("at 10")); err != nil {
		t.Fatal(err)
	}
	if second {
		if err := l.CreateSnapshot(40, &raftpb.ConfState{Voters: []uint64{1}}, []byte("at 40")); err != nil {
			t.Fatal(err)
		}
	}
	if compact > 0 {
		if err := l.Compact(compact); err != nil {
			t.Fatal(err)
		}
	}
	st := stateOf(t, l)
	l.Close()
	return st
}

func TestSnapshotDamage(t *testing.T) {
	t.Run("only snapshot corrupt", func(t *testing.T) {
		dir := t.TempDir()
		snapshotted(t, dir, false, 0)
		path := filepath.Join(dir, snapshotName(10, 1))
		mutateFile(t, path, func(b []byte) []byte { b[len(b)-2] ^= 1; return b })
		wantCorrupt(t, dir, path, 0)
	})
	t.Run("only snapshot missing", func(t *testing.T) {
		dir := t.TempDir()
		snapshotted(t, dir, false, 0)
		path := filepath.Join(dir, snapshotName(10, 1))
		os.Remove(path)
		wantCorrupt(t, dir, path, 0)
	})
	t.Run("newest corrupt, WAL covers the gap", func(t *testing.T) {
		dir := t.TempDir()
		want := snapshotted(t, dir, true, 0)
		path := filepath.Join(dir, snapshotName(40, 1))
		mutateFile(t, path, func(b []byte) []byte { b[snapHeaderSize+1] ^= 1; return b })
		l := openT(t, dir)
		r := l.Recovered()
		if r.SnapshotIndex != 10 || len(r.SkippedSnapshots) != 1 || r.SkippedSnapshots[0].File != path {
			t.Fatalf("Recovered = %+v, want fallback to 10 skipping %s", r, path)
		}
		got := stateOf(t, l)
		want.SnapIndex, want.SnapData = 10, "at 10"
		diffState(t, got, entriesFrom(want, 11))
	})
	t.Run("newest corrupt, WAL compacted past the older one", func(t *testing.T) {
		dir := t.TempDir()
		snapshotted(t, dir, true, 40)
		if name := filepath.Base(segmentFiles(t, dir)[0]); name[:16] == "0000000000000000" {
			t.Fatalf("compaction removed no segment")
		}
		path := filepath.Join(dir, snapshotName(40, 1))
		mutateFile(t, path, func(b []byte) []byte { b[snapHeaderSize+1] ^= 1; return b })
		wantCorrupt(t, dir, segmentFiles(t, dir)[0], 0)
	})
	t.Run("received snapshot corrupt, older one cannot stand in", func(t *testing.T) {
		dir := t.TempDir()
		l := openT(t, dir)
		mustSave(t, l, hardState(1, 1, 3), ents(1, 3, 1), nil)
		if err := l.CreateSnapshot(3, &raftpb.ConfState{Voters: []uint64{1, 2}}, []byte("at 3")); err != nil {
			t.Fatal(err)
		}
		snap := &raftpb.Snapshot{Data: []byte("at 50"), Metadata: &raftpb.SnapshotMetadata{
			Index: new(uint64(50)), Term: new(uint64(2)), ConfState: &raftpb.ConfState{Voters: []uint64{1, 2}}}}
		mustSave(t, l, hardState(2, 0, 50), ents(51, 52, 2), snap)
		l.Close()
		mutateFile(t, filepath.Join(dir, snapshotName(50, 2)), func(b []byte) []byte { b[len(b)-1] ^= 1; return b })
		path := segmentFiles(t, dir)[0]
		var resetOff int64 = -1
		for _, r := range recordsOf(t, path) {
			if r.typ == recSnapshotReset {
				resetOff = r.off
			}
		}
		wantCorrupt(t, dir, path, resetOff)
	})
	t.Run("orphan snapshot from an interrupted CreateSnapshot", func(t *testing.T) {
		dir := t.TempDir()
		want := snapshotted(t, dir, false, 0)
		orphan := raftpb.EnsureSnapshot(&raftpb.Snapshot{Data: []byte("at 50"),
			Metadata: &raftpb.SnapshotMetadata{Index: new(uint64(50)), Term: new(uint64(1))}})
		tmp, final, err := writeSnapshotTemp(dir, orphan)
		if err != nil {
			t.Fatal(err)
		}
		if err := publishSnapshot(dir, tmp, final); err != nil {
			t.Fatal(err)
		}
		leftover := filepath.Join(dir, snapshotName(51, 1)+".tmp")
		if err := os.WriteFile(leftover, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
		l := openT(t, dir)
		r := l.Recovered()
		if len(r.SkippedSnapshots) != 1 || r.SkippedSnapshots[0].File != final || len(r.RemovedTemp) != 1 || r.RemovedTemp[0] != leftover {
			t.Fatalf("Recovered = %+v", r)
		}
		if _, err := os.Stat(final); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("orphan %s not removed: %v", final, err)
		}
		diffState(t, stateOf(t, l), entriesFrom(want, 11))
	})
}

func TestFailedLogRefusesWrites(t *testing.T) {
	l := openT(t, t.TempDir())
	mustSave(t, l, hardState(1, 1, 1), ents(1, 1, 1), nil)
	// Close the segment under the Log to make the next write fail.
	l.f.Close()
	if err := l.Save(nil, ents(2, 2, 1), nil); !errors.Is(err, ErrFailed) {
		t.Fatalf("Save on a broken file: %v, want ErrFailed", err)
	}
	if err := l.Save(nil, ents(2, 2, 1), nil); !errors.Is(err, ErrFailed) {
		t.Fatalf("second Save: %v, want ErrFailed (sticky)", err)
	}
	if err := l.Compact(0); !errors.Is(err, ErrFailed) {
		t.Fatalf("Compact: %v, want ErrFailed", err)
	}
	if last, _ := l.LastIndex(); last != 1 {
		t.Fatalf("failed Save became visible: LastIndex %d", last)
	}
}

// A tail of random bytes after a bad record is searched within a bounded
// budget; a huge random tail is refused rather than cut unexamined.
func TestFindRecordBudget(t *testing.T) {
	seed := segmentSeed(1)
	// Headers that all claim a plausible, huge length: each costs a full
	// checksum, so the search must give up.
	b := make([]byte, 1<<20)
	for q := 0; q+recordHeaderSize <= len(b); q += recordHeaderSize {
		b[q] = byte(recEntry)
		binary.LittleEndian.PutUint32(b[q+1:], uint32(len(b)-q-recordHeaderSize-1))
	}
	if _, res := findRecord(b, 1, seed); res != searchExhausted {
		t.Fatalf("findRecord over adversarial bytes = %v, want searchExhausted", res)
	}
	good := appendRecord(make([]byte, 5000), seed, recCommit, nil)
	if q, res := findRecord(good, 1, seed); res != recordFound || q != 5000 {
		t.Fatalf("findRecord = %d, %v; want 5000, found", q, res)
	}
	if _, res := findRecord(make([]byte, 5000), 1, seed); res != noRecord {
		t.Fatalf("findRecord over zeros = %v", res)
	}
}
