package raftlog

import (
	"os"
	"path/filepath"
	"testing"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"pgregory.net/rapid"
)

// TestPropertyModel drives a Log and a raft.MemoryStorage model with the
// same random sequence of Save (appends, overwrites of the uncommitted
// tail, received snapshots), CreateSnapshot, Compact and reopen, and
// checks after every step that the Log serves the model's state, and after
// every reopen the model's state from the snapshot on. Half the runs end
// in a simulated crash: the last Save's batch is cut at a random byte
// (optionally followed by zeros, as a file system may leave), and the
// reopened Log must hold exactly the state before that Save.
//
// rapid prints the seed of a failing run; rerun it with -rapid.seed=N
// (-rapid.v prints every run's seed).
func TestPropertyModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		dir, err := os.MkdirTemp("", "raftlog-prop")
		if err != nil {
			rt.Fatal(err)
		}
		defer os.RemoveAll(dir)
		segSize := rapid.SampledFrom([]int64{4096, 16384}).Draw(rt, "segSize")
		open := func() *Log {
			l, err := Open(dir, WithSegmentSize(segSize))
			if err != nil {
				rt.Fatalf("Open: %v", err)
			}
			return l
		}
		l := open()
		defer func() { l.Close() }()

		p := &propModel{mem: raft.NewMemoryStorage(), term: 1}
		steps := rapid.IntRange(1, 40).Draw(rt, "steps")
		for range steps {
			switch op := rapid.IntRange(0, 9).Draw(rt, "op"); {
			case op <= 5:
				hs, es := p.drawAppend(rt)
				mustSave(rt, l, hs, es, nil)
				p.save(rt, hs, es, nil)
			case op == 6:
				hs, es, snap := p.drawReceivedSnapshot(rt)
				mustSave(rt, l, hs, es, snap)
				p.save(rt, hs, es, snap)
			case op == 7:
				if p.committed <= p.snapIndex {
					continue
				}
				i := rapid.Uint64Range(p.snapIndex+1, p.committed).Draw(rt, "snapIndex")
				cs := &raftpb.ConfState{Voters: rapid.SliceOfN(rapid.Uint64Range(1, 9), 1, 5).Draw(rt, "voters")}
				data := rapid.SliceOfN(rapid.Byte(), 0, 300).Draw(rt, "snapData")
				if err := l.CreateSnapshot(i, cs, data); err != nil {
					rt.Fatalf("CreateSnapshot(%d): %v", i, err)
				}
				if _, err := p.mem.CreateSnapshot(i, cs, data); err != nil {
					rt.Fatal(err)
				}
				p.snapIndex = i
			case op == 8:
				first, _ := p.mem.FirstIndex()
				i := rapid.Uint64Range(first-1, p.snapIndex).Draw(rt, "compact")
				if err := l.Compact(i); err != nil {
					rt.Fatalf("Compact(%d): %v", i, err)
				}
				if i >= first {
					if err := p.mem.Compact(i); err != nil {
						rt.Fatal(err)
					}
				}
			case op == 9:
				if err := l.Close(); err != nil {
					rt.Fatal(err)
				}
				l = open()
				if !l.Recovered().Clean() {
					rt.Fatalf("clean reopen reported repairs: %+v", l.Recovered())
				}
				p.compactToSnapshot(rt)
			}
			diffState(rt, stateOf(rt, l), stateOf(rt, p.mem))
		}

		if !rapid.Bool().Draw(rt, "crash") {
			l.Close()
			l = open()
			p.compactToSnapshot(rt)
			diffState(rt, stateOf(rt, l), stateOf(rt, p.mem))
			return
		}
		// Crash during one more Save (an append, or a received snapshot
		// whose file is then an orphan): keep a random prefix of its batch.
		p.compactToSnapshot(rt)
		before := stateOf(rt, p.mem)
		var snap *raftpb.Snapshot
		var hs *raftpb.HardState
		var es []*raftpb.Entry
		if rapid.Bool().Draw(rt, "crashInSnapshotSave") {
			hs, es, snap = p.drawReceivedSnapshot(rt)
		} else if hs, es = p.drawAppend(rt); len(es) == 0 {
			es = []*raftpb.Entry{ent(before.Last+1, p.term, "forced")}
		}
		mustSave(rt, l, hs, es, snap)
		l.Close()
		segs := segmentFiles(rt, dir)
		path := segs[len(segs)-1]
		ends := commitEnds(rt, path)
		cut := rapid.Int64Range(ends[len(ends)-2], ends[len(ends)-1]-1).Draw(rt, "cut")
		zeros := rapid.IntRange(0, 3).Draw(rt, "zeros") * 1000
		mutateFile(rt, path, func(b []byte) []byte { return append(b[:cut], make([]byte, zeros)...) })
		l = open()
		r := l.Recovered()
		if cut == ends[len(ends)-2] && zeros == 0 {
			// The batch vanished whole: no torn tail to cut.
			if r.Torn != nil {
				rt.Fatalf("crash exactly at the batch boundary %d: Recovered = %+v", cut, r)
			}
		} else if r.Torn == nil || r.Torn.File != path || r.Torn.Offset != ends[len(ends)-2] {
			rt.Fatalf("crash at byte %d of %s: Recovered = %+v", cut, filepath.Base(path), r)
		}
		if orphan := snap != nil; orphan != (len(r.SkippedSnapshots) == 1) || len(r.SkippedSnapshots) > 1 {
			rt.Fatalf("crash in a Save with snapshot=%v: skipped %+v", orphan, r.SkippedSnapshots)
		}
		diffState(rt, stateOf(rt, l), before)
		// And it carries on: a Save, then a clean reopen.
		next := before.Last + 1
		mustSave(rt, l, nil, []*raftpb.Entry{ent(next, p.term, "after crash")}, nil)
		want := stateOf(rt, l)
		l.Close()
		l = open()
		if !l.Recovered().Clean() {
			rt.Fatalf("reopen after recovery not clean: %+v", l.Recovered())
		}
		diffState(rt, stateOf(rt, l), want)
	})
}

// propModel tracks what a real node would guarantee, so that the random
// operations are ones raft can issue: only entries after the commit index
// are overwritten, and snapshots are taken at committed indexes.
type propModel struct {
	mem       *raft.MemoryStorage
	term      uint64
	committed uint64
	snapIndex uint64
}

func (p *propModel) last() uint64 { i, _ := p.mem.LastIndex(); return i }

func (p *propModel) drawAppend(rt *rapid.T) (*raftpb.HardState, []*raftpb.Entry) {
	last := p.last()
	from := rapid.Uint64Range(p.committed+1, last+1).Draw(rt, "from")
	if from <= last || rapid.IntRange(0, 4).Draw(rt, "newTerm") == 0 {
		p.term++ // overwriting the tail takes a new leader
	}
	n := rapid.IntRange(0, 4).Draw(rt, "n")
	var es []*raftpb.Entry
	for k := range n {
		data := rapid.SliceOfN(rapid.Byte(), 0, 200).Draw(rt, "data")
		es = append(es, &raftpb.Entry{Index: new(from + uint64(k)), Term: new(p.term), Data: data,
			Type: rapid.SampledFrom([]raftpb.EntryType{raftpb.EntryNormal, raftpb.EntryConfChange}).Draw(rt, "type").Enum()})
	}
	newLast := last
	if n > 0 {
		newLast = from + uint64(n) - 1
	}
	if rapid.IntRange(0, 3).Draw(rt, "noHS") == 0 {
		return nil, es
	}
	commit := rapid.Uint64Range(p.committed, max(p.committed, min(newLast, from+uint64(n)-1))).Draw(rt, "commit")
	return hardState(p.term, rapid.Uint64Range(0, 3).Draw(rt, "vote"), commit), es
}

func (p *propModel) drawReceivedSnapshot(rt *rapid.T) (*raftpb.HardState, []*raftpb.Entry, *raftpb.Snapshot) {
	p.term++
	idx := rapid.Uint64Range(max(p.snapIndex, p.committed)+1, p.last()+10).Draw(rt, "recvIndex")
	snap := &raftpb.Snapshot{
		Data: rapid.SliceOfN(rapid.Byte(), 0, 300).Draw(rt, "recvData"),
		Metadata: &raftpb.SnapshotMetadata{Index: new(idx), Term: new(p.term),
			ConfState: &raftpb.ConfState{Voters: []uint64{1, 2, 3}, Learners: rapid.SliceOfN(rapid.Uint64Range(4, 9), 0, 2).Draw(rt, "learners")}},
	}
	es := ents(idx+1, idx+uint64(rapid.IntRange(0, 3).Draw(rt, "after")), p.term)
	return hardState(p.term, 0, idx), es, snap
}

// save mirrors Log.Save into the model.
func (p *propModel) save(rt *rapid.T, hs *raftpb.HardState, es []*raftpb.Entry, snap *raftpb.Snapshot) {
	if snap != nil {
		if err := p.mem.ApplySnapshot(snap); err != nil {
			rt.Fatal(err)
		}
		p.snapIndex = snap.GetMetadata().GetIndex()
	}
	if err := p.mem.Append(es); err != nil {
		rt.Fatal(err)
	}
	if hs != nil {
		if err := p.mem.SetHardState(hs); err != nil {
			rt.Fatal(err)
		}
		p.committed = hs.GetCommit()
	}
}

// compactToSnapshot makes the model look like a reopened Log, which loads
// no entries the snapshot covers.
func (p *propModel) compactToSnapshot(rt *rapid.T) {
	if first, _ := p.mem.FirstIndex(); p.snapIndex >= first {
		if err := p.mem.Compact(p.snapIndex); err != nil {
			rt.Fatal(err)
		}
	}
}
