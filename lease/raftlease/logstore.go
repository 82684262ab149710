package raftlease

import (
	"bytes"
	"io"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
)

// logStore is the durable Raft log the group runs on: raft.Storage for the
// Raft library to read, plus the writes the run loop makes.
type logStore interface {
	raft.Storage
	// Save makes snap (if not empty), then ents, then hs durable, in that
	// order, before it returns. Entries replace any stored entries at the
	// same and higher indexes.
	Save(hs *pb.HardState, ents []*pb.Entry, snap *pb.Snapshot) error
	// CreateSnapshotFrom records a snapshot of the state machine at
	// index (already applied) with configuration cs, its size bytes of
	// data streamed by write.
	CreateSnapshotFrom(index uint64, cs *pb.ConfState, size int, write func(io.Writer) error) error
	// Compact discards the entries before index.
	Compact(index uint64) error
	Close() error
}

// memLog keeps the log in memory: nothing survives Close. Tests use it
// where persistence is not the point.
type memLog struct{ ms *raft.MemoryStorage }

func newMemLog() *memLog { return &memLog{ms: raft.NewMemoryStorage()} }

func (m *memLog) InitialState() (*pb.HardState, *pb.ConfState, error) { return m.ms.InitialState() }
func (m *memLog) Entries(lo, hi, maxSize uint64) ([]*pb.Entry, error) {
	return m.ms.Entries(lo, hi, maxSize)
}
func (m *memLog) Term(i uint64) (uint64, error)   { return m.ms.Term(i) }
func (m *memLog) LastIndex() (uint64, error)      { return m.ms.LastIndex() }
func (m *memLog) FirstIndex() (uint64, error)     { return m.ms.FirstIndex() }
func (m *memLog) Snapshot() (*pb.Snapshot, error) { return m.ms.Snapshot() }
func (m *memLog) Compact(index uint64) error      { return m.ms.Compact(index) }
func (m *memLog) Close() error                    { return nil }

func (m *memLog) Save(hs *pb.HardState, ents []*pb.Entry, snap *pb.Snapshot) error {
	if !raft.IsEmptySnap(snap) {
		if err := m.ms.ApplySnapshot(snap); err != nil {
			return err
		}
	}
	if len(ents) > 0 {
		if err := m.ms.Append(ents); err != nil {
			return err
		}
	}
	if !raft.IsEmptyHardState(hs) {
		return m.ms.SetHardState(hs)
	}
	return nil
}

func (m *memLog) CreateSnapshotFrom(index uint64, cs *pb.ConfState, size int, write func(io.Writer) error) error {
	var b bytes.Buffer
	b.Grow(size)
	if err := write(&b); err != nil {
		return err
	}
	_, err := m.ms.CreateSnapshot(index, cs, b.Bytes())
	return err
}
