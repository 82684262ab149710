package raftlog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

func ent(index, term uint64, data string) *raftpb.Entry {
	return &raftpb.Entry{Index: new(index), Term: new(term), Type: raftpb.EntryNormal.Enum(), Data: []byte(data)}
}

func ents(from, to, term uint64) []*raftpb.Entry {
	var out []*raftpb.Entry
	for i := from; i <= to; i++ {
		out = append(out, ent(i, term, fmt.Sprintf("e%d-t%d", i, term)))
	}
	return out
}

func hardState(term, vote, commit uint64) *raftpb.HardState {
	return &raftpb.HardState{Term: new(term), Vote: new(vote), Commit: new(commit)}
}

// tester is what the helpers need from *testing.T and *rapid.T.
type tester interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
}

func openT(t *testing.T, dir string, opts ...Option) *Log {
	t.Helper()
	l, err := Open(dir, append([]Option{WithLogger(testLogger(t))}, opts...)...)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

func mustSave(t tester, l *Log, hs *raftpb.HardState, es []*raftpb.Entry, snap *raftpb.Snapshot) {
	t.Helper()
	if err := l.Save(hs, es, snap); err != nil {
		t.Fatalf("Save: %v", err)
	}
}

// state is everything a restarted node reads from Storage.
type state struct {
	HS        string
	CS        string
	SnapIndex uint64
	SnapTerm  uint64
	SnapData  string
	First     uint64
	Last      uint64
	Ents      []string
}

func stateOf(t tester, s raft.Storage) state {
	t.Helper()
	hs, cs, err := s.InitialState()
	if err != nil {
		t.Fatal(err)
	}
	snap, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	first, _ := s.FirstIndex()
	last, _ := s.LastIndex()
	st := state{
		HS:        fmt.Sprintf("term=%d vote=%d commit=%d", hs.GetTerm(), hs.GetVote(), hs.GetCommit()),
		CS:        fmt.Sprint(cs.GetVoters(), cs.GetLearners(), cs.GetVotersOutgoing(), cs.GetLearnersNext(), cs.GetAutoLeave()),
		SnapIndex: snap.GetMetadata().GetIndex(),
		SnapTerm:  snap.GetMetadata().GetTerm(),
		SnapData:  string(snap.GetData()),
		First:     first,
		Last:      last,
	}
	if last >= first {
		es, err := s.Entries(first, last+1, ^uint64(0))
		if err != nil {
			t.Fatalf("Entries(%d,%d): %v", first, last+1, err)
		}
		for _, e := range es {
			st.Ents = append(st.Ents, fmt.Sprintf("%d/%d/%v/%q", e.GetIndex(), e.GetTerm(), e.GetType(), e.GetData()))
		}
	}
	return st
}

// entriesFrom is stateOf restricted to entries from index from on, for
// comparing a log that was compacted by a restart with one that was not.
func entriesFrom(st state, from uint64) state {
	if from > st.First {
		st.Ents = st.Ents[min(int(from-st.First), len(st.Ents)):]
		st.First = from
	}
	return st
}

func diffState(t tester, got, want state) {
	t.Helper()
	if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
		t.Fatalf("state differs\n got: %+v\nwant: %+v", got, want)
	}
}

func TestOpenEmpty(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir)
	if !l.Recovered().Clean() {
		t.Fatalf("fresh log not clean: %+v", l.Recovered())
	}
	hs, cs, err := l.InitialState()
	if err != nil || !raft.IsEmptyHardState(hs) || len(cs.GetVoters()) != 0 {
		t.Fatalf("InitialState = %v %v %v", hs, cs, err)
	}
	if first, _ := l.FirstIndex(); first != 1 {
		t.Fatalf("FirstIndex = %d", first)
	}
	if last, _ := l.LastIndex(); last != 0 {
		t.Fatalf("LastIndex = %d", last)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2 := openT(t, dir)
	if !l2.Recovered().Clean() || l2.Recovered().LastIndex != 0 {
		t.Fatalf("reopened empty log: %+v", l2.Recovered())
	}
}

func TestRoundTripRestart(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir)
	mustSave(t, l, hardState(1, 1, 0), ents(1, 3, 1), nil)
	mustSave(t, l, hardState(1, 1, 3), ents(4, 5, 1), nil)
	mustSave(t, l, nil, nil, nil) // nothing to do
	mustSave(t, l, hardState(2, 0, 4), nil, nil)
	want := stateOf(t, l)
	if want.Last != 5 || want.HS != "term=2 vote=0 commit=4" {
		t.Fatalf("unexpected state before restart: %+v", want)
	}
	l.Close()
	l2 := openT(t, dir)
	diffState(t, stateOf(t, l2), want)
	if !l2.Recovered().Clean() {
		t.Fatalf("clean restart reported repairs: %+v", l2.Recovered())
	}
}

func TestOverwriteConflictingTail(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir)
	mustSave(t, l, hardState(1, 1, 2), ents(1, 6, 1), nil)
	// A new leader in term 2 overwrites the uncommitted 4..6 with 4..5.
	mustSave(t, l, hardState(2, 2, 2), ents(4, 5, 2), nil)
	want := stateOf(t, l)
	if want.Last != 5 || want.Ents[3] != `4/2/EntryNormal/"e4-t2"` {
		t.Fatalf("overwrite not applied in memory: %+v", want)
	}
	l.Close()
	l2 := openT(t, dir)
	diffState(t, stateOf(t, l2), want)
	mustSave(t, l2, nil, ents(6, 6, 2), nil)
	want = stateOf(t, l2)
	l2.Close()
	diffState(t, stateOf(t, openT(t, dir)), want)
}

func TestSnapshotCompactRestart(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, WithSegmentSize(4096))
	cs := &raftpb.ConfState{Voters: []uint64{1, 2, 3}}
	for i := uint64(1); i <= 200; i += 10 {
		es := ents(i, i+9, 1)
		for _, e := range es {
			e.Data = bytes.Repeat(e.Data, 20)
		}
		mustSave(t, l, hardState(1, 1, i+9), es, nil)
	}
	if len(l.segs) < 3 {
		t.Fatalf("expected rotation, have %d segments", len(l.segs))
	}
	if err := l.CreateSnapshot(150, cs, []byte("state@150")); err != nil {
		t.Fatal(err)
	}
	snap, _ := l.Snapshot()
	if snap.GetMetadata().GetIndex() != 150 || snap.GetMetadata().GetTerm() != 1 {
		t.Fatalf("snapshot metadata %v", snap.GetMetadata())
	}
	before := len(l.segs)
	if err := l.Compact(140); err != nil {
		t.Fatal(err)
	}
	if n := len(segmentFiles(t, dir)); n >= before || n != len(l.segs) {
		t.Fatalf("compaction: %d segment files before, %d after, Log tracks %d", before, n, len(l.segs))
	}
	if first, _ := l.FirstIndex(); first != 141 {
		t.Fatalf("FirstIndex after Compact(140) = %d", first)
	}
	if err := l.Compact(151); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Compact above snapshot: %v, want ErrInvalid", err)
	}
	mustSave(t, l, hardState(1, 1, 205), ents(201, 205, 1), nil)
	want := stateOf(t, l)
	l.Close()

	l2 := openT(t, dir, WithSegmentSize(4096))
	got := stateOf(t, l2)
	diffState(t, got, entriesFrom(want, 151))
	if r := l2.Recovered(); r.SnapshotIndex != 150 || r.LastIndex != 205 || !r.Clean() {
		t.Fatalf("Recovered = %+v", r)
	}
	if got.CS != fmt.Sprint([]uint64{1, 2, 3}, []uint64(nil), []uint64(nil), []uint64(nil), false) {
		t.Fatalf("ConfState = %s", got.CS)
	}
}

func TestSaveReceivedSnapshot(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir)
	mustSave(t, l, hardState(1, 1, 3), ents(1, 5, 1), nil)
	snap := &raftpb.Snapshot{
		Data: []byte("leader state@100"),
		Metadata: &raftpb.SnapshotMetadata{
			Index: new(uint64(100)), Term: new(uint64(3)),
			ConfState: &raftpb.ConfState{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}},
		},
	}
	mustSave(t, l, hardState(3, 0, 100), ents(101, 102, 3), snap)
	want := stateOf(t, l)
	if want.First != 101 || want.Last != 102 || want.SnapIndex != 100 {
		t.Fatalf("state after snapshot: %+v", want)
	}
	if err := l.Save(nil, nil, snap); !errors.Is(err, raft.ErrSnapOutOfDate) {
		t.Fatalf("old snapshot: %v", err)
	}
	l.Close()
	diffState(t, stateOf(t, openT(t, dir)), want)
}

func TestSaveRejectsBadInput(t *testing.T) {
	l := openT(t, t.TempDir())
	mustSave(t, l, hardState(1, 1, 1), ents(1, 3, 1), nil)
	for _, tc := range []struct {
		name string
		hs   *raftpb.HardState
		es   []*raftpb.Entry
	}{
		{"gap", nil, ents(5, 6, 1)},
		{"not consecutive", nil, []*raftpb.Entry{ent(4, 1, ""), ent(6, 1, "")}},
		{"term zero", nil, []*raftpb.Entry{ent(4, 0, "")}},
		{"commit beyond last", hardState(1, 1, 9), ents(4, 4, 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := stateOf(t, l)
			if err := l.Save(tc.hs, tc.es, nil); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Save: %v, want ErrInvalid", err)
			}
			diffState(t, stateOf(t, l), before)
		})
	}
}

func TestLocked(t *testing.T) {
	dir := t.TempDir()
	openT(t, dir)
	if _, err := Open(dir); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
}

func TestClosed(t *testing.T) {
	l := openT(t, t.TempDir())
	mustSave(t, l, hardState(1, 1, 1), ents(1, 1, 1), nil)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := l.Save(nil, ents(2, 2, 1), nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Save after Close: %v", err)
	}
	if err := l.CreateSnapshot(1, nil, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("CreateSnapshot after Close: %v", err)
	}
	if last, _ := l.LastIndex(); last != 1 {
		t.Fatalf("LastIndex after Close = %d", last)
	}
}

// segmentFiles returns the WAL segment paths in dir in sequence order.
func segmentFiles(t tester, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.wal"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(m)
	return m
}

func fileSize(t tester, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func TestSegmentRotationRestart(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, WithSegmentSize(4096))
	for i := uint64(1); i <= 120; i += 3 {
		es := ents(i, i+2, 1+i/40)
		for _, e := range es {
			e.Data = bytes.Repeat([]byte{byte(i)}, 100)
		}
		mustSave(t, l, hardState(1+i/40, 1, i), es, nil)
	}
	// Overwrite across the last rotation boundary.
	mustSave(t, l, hardState(9, 2, 100), ents(110, 112, 9), nil)
	want := stateOf(t, l)
	segs := len(l.segs)
	l.Close()
	if segs < 4 || len(segmentFiles(t, dir)) != segs {
		t.Fatalf("%d segments tracked, %d files", segs, len(segmentFiles(t, dir)))
	}
	l2 := openT(t, dir, WithSegmentSize(4096))
	if r := l2.Recovered(); r.Segments != segs || !r.Clean() || r.LastIndex != 112 {
		t.Fatalf("Recovered = %+v", r)
	}
	diffState(t, stateOf(t, l2), want)
}

// TestSnapshotDataStaysOnDisk: the Log keeps a snapshot's metadata in
// memory and reads its data from the file when asked, for a snapshot it
// created (streamed) and for one it received; a stream that writes
// another size than announced is refused and leaves nothing behind.
func TestSnapshotDataStaysOnDisk(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir)
	cs := &raftpb.ConfState{Voters: []uint64{1, 2, 3}}
	mustSave(t, l, hardState(1, 1, 20), ents(1, 20, 1), nil)
	data := bytes.Repeat([]byte("state "), 10000)
	if err := l.CreateSnapshotFrom(10, cs, len(data), func(w io.Writer) error {
		for off := 0; off < len(data); off += 4096 {
			if _, err := w.Write(data[off:min(off+4096, len(data))]); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if in, _ := l.mem.Snapshot(); len(in.GetData()) != 0 {
		t.Fatalf("the in-memory log holds %d bytes of snapshot data", len(in.GetData()))
	}
	got, err := l.Snapshot()
	if err != nil || !bytes.Equal(got.GetData(), data) || got.GetMetadata().GetIndex() != 10 {
		t.Fatalf("Snapshot = %d bytes at index %d, %v", len(got.GetData()), got.GetMetadata().GetIndex(), err)
	}
	err = l.CreateSnapshotFrom(15, cs, 100, func(w io.Writer) error { _, err := w.Write([]byte("short")); return err })
	if err == nil {
		t.Fatal("a stream of 5 bytes announced as 100 was accepted")
	}
	if tmp, _ := filepath.Glob(filepath.Join(dir, "*.tmp")); len(tmp) != 0 {
		t.Fatalf("temporary files left: %v", tmp)
	}
	recv := &raftpb.Snapshot{Data: []byte("received state"), Metadata: &raftpb.SnapshotMetadata{Index: new(uint64(30)), Term: new(uint64(2)), ConfState: cs}}
	mustSave(t, l, hardState(2, 1, 30), nil, recv)
	if in, _ := l.mem.Snapshot(); len(in.GetData()) != 0 {
		t.Fatalf("the in-memory log holds %d bytes of a received snapshot", len(in.GetData()))
	}
	if got, err := l.Snapshot(); err != nil || string(got.GetData()) != "received state" {
		t.Fatalf("Snapshot after Save = %q, %v", got.GetData(), err)
	}
	l.Close()
	l2 := openT(t, dir)
	if in, _ := l2.mem.Snapshot(); len(in.GetData()) != 0 {
		t.Fatal("the recovered in-memory log holds snapshot data")
	}
	if got, err := l2.Snapshot(); err != nil || string(got.GetData()) != "received state" {
		t.Fatalf("Snapshot after Open = %q, %v", got.GetData(), err)
	}
}

// TestTempFilesNotFollowed: a symbolic link planted at the name of the
// next segment's temporary file is replaced, not written through, and
// the log's files are not readable by others.
func TestTempFilesNotFollowed(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	l := openT(t, dir, WithSegmentSize(4096))
	// Fill the first segment; the next Save starts segment 1 after the
	// last index, under a temporary name planted as a link first.
	last := uint64(0)
	for l.size < l.segSize {
		es := ents(last+1, last+10, 1)
		for _, e := range es {
			e.Data = bytes.Repeat(e.Data, 20)
		}
		mustSave(t, l, hardState(1, 1, last+10), es, nil)
		last += 10
	}
	if err := os.Symlink(victim, filepath.Join(dir, segmentName(1, last)+".tmp")); err != nil {
		t.Fatal(err)
	}
	mustSave(t, l, hardState(1, 1, last+1), ents(last+1, last+1, 1), nil)
	if len(l.segs) != 2 {
		t.Fatalf("%d segments, want a rotation", len(l.segs))
	}
	if b, err := os.ReadFile(victim); err != nil || string(b) != "precious" {
		t.Fatalf("the file the link pointed to now holds %q (%v)", b, err)
	}
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		fi, err := os.Lstat(filepath.Join(dir, de.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode()&os.ModeSymlink == 0 && fi.Mode().Perm()&0o027 != 0 {
			t.Errorf("%s has mode %04o, want 0640 or tighter", de.Name(), fi.Mode().Perm())
		}
	}
}
