package raftlog

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// The HardState must survive the removal of the segment it was written
// in: every segment starts with a copy.
func TestHardStateSurvivesCompaction(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, WithSegmentSize(4096))
	mustSave(t, l, hardState(7, 3, 0), ents(1, 1, 7), nil)
	mustSave(t, l, hardState(7, 3, 1), nil, nil)
	for i := uint64(2); i <= 80; i++ { // no HardState in these Saves
		mustSave(t, l, nil, []*raftpb.Entry{ent(i, 7, strings.Repeat("z", 120))}, nil)
	}
	if err := l.CreateSnapshot(1, &raftpb.ConfState{Voters: []uint64{3}}, nil); err != nil {
		t.Fatal(err)
	}
	// Only index 1 is committed, so nothing can be compacted past it...
	if err := l.Compact(1); err != nil {
		t.Fatal(err)
	}
	// ...until the commit index moves and a later snapshot is taken.
	mustSave(t, l, hardState(7, 3, 80), nil, nil)
	if err := l.CreateSnapshot(75, nil, []byte("75")); err != nil {
		t.Fatal(err)
	}
	mustSave(t, l, nil, ents(81, 81, 7), nil)
	if err := l.Compact(75); err != nil {
		t.Fatal(err)
	}
	if name := filepath.Base(segmentFiles(t, dir)[0]); strings.HasPrefix(name, "0000000000000000-") {
		t.Fatalf("first segment not compacted away")
	}
	want := stateOf(t, l)
	l.Close()
	got := stateOf(t, openT(t, dir))
	diffState(t, got, entriesFrom(want, 76))
	if got.HS != "term=7 vote=3 commit=80" || got.CS != fmt.Sprint([]uint64{3}, []uint64(nil), []uint64(nil), []uint64(nil), false) {
		t.Fatalf("HardState %s, ConfState %s after compaction and restart", got.HS, got.CS)
	}
}

func TestSnapshotRetentionAndCompactNoop(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, WithSnapshotsKept(2))
	mustSave(t, l, hardState(1, 1, 10), ents(1, 10, 1), nil)
	for i := uint64(2); i <= 10; i += 2 {
		if err := l.CreateSnapshot(i, nil, []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	m, _ := filepath.Glob(filepath.Join(dir, "*.snap"))
	if len(m) != 2 || filepath.Base(m[0]) != snapshotName(8, 1) || filepath.Base(m[1]) != snapshotName(10, 1) {
		t.Fatalf("snapshot files kept: %v", m)
	}
	if err := l.CreateSnapshot(9, nil, nil); !errors.Is(err, raft.ErrSnapOutOfDate) {
		t.Fatalf("CreateSnapshot(9) after 10: %v", err)
	}
	if err := l.CreateSnapshot(11, nil, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("CreateSnapshot beyond the log: %v", err)
	}
	if err := l.Compact(10); err != nil {
		t.Fatal(err)
	}
	if err := l.Compact(5); err != nil {
		t.Fatalf("Compact below the compaction point: %v, want nil", err)
	}
	if first, _ := l.FirstIndex(); first != 11 {
		t.Fatalf("FirstIndex = %d", first)
	}
	for _, opt := range []Option{WithSegmentSize(100), WithSnapshotsKept(0)} {
		if _, err := Open(t.TempDir(), opt); !errors.Is(err, ErrInvalid) {
			t.Fatalf("bad option: %v, want ErrInvalid", err)
		}
	}
}

// Save from the raft loop and CreateSnapshot/Compact from an apply
// goroutine run at the same time; run with -race.
func TestConcurrentSaveAndSnapshot(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, WithSegmentSize(8192))
	const n = 300
	applied := make(chan uint64, n)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range applied {
			if i%25 != 0 {
				continue
			}
			if err := l.CreateSnapshot(i, &raftpb.ConfState{Voters: []uint64{1}}, []byte(fmt.Sprint(i))); err != nil {
				t.Errorf("CreateSnapshot(%d): %v", i, err)
				return
			}
			if err := l.Compact(i - 10); err != nil {
				t.Errorf("Compact(%d): %v", i-10, err)
				return
			}
		}
	}()
	for i := uint64(1); i <= n; i++ {
		mustSave(t, l, hardState(1, 1, i), []*raftpb.Entry{ent(i, 1, strings.Repeat("c", 64))}, nil)
		applied <- i
		if _, err := l.Entries(i-min(i-1, 5), i+1, 1<<20); err != nil && !errors.Is(err, raft.ErrCompacted) {
			t.Fatal(err)
		}
	}
	close(applied)
	wg.Wait()
	want := stateOf(t, l)
	l.Close()
	got := stateOf(t, openT(t, dir))
	if got.SnapIndex != 300 || got.Last != n {
		t.Fatalf("after restart: snapshot %d last %d", got.SnapIndex, got.Last)
	}
	diffState(t, got, entriesFrom(want, 301))
}

func TestOpenCreatesNestedDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b", "raft")
	l := openT(t, dir)
	mustSave(t, l, hardState(1, 1, 1), ents(1, 1, 1), nil)
	l.Close()
	if got := stateOf(t, openT(t, dir)); got.Last != 1 {
		t.Fatalf("reopened nested directory: %+v", got)
	}
}
