package raftlog_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/hakit/hakit/lease/raftlease/raftlog"
	"go.etcd.io/raft/v3/raftpb"
)

// A node saves each raft.Ready before sending its messages; after a
// restart the Log serves the same state to raft.RestartNode.
func Example() {
	dir, err := os.MkdirTemp("", "raftlog-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	l, err := raftlog.Open(dir)
	if err != nil {
		log.Fatal(err)
	}
	// What a raft.Ready would carry: rd.HardState, rd.Entries, rd.Snapshot.
	hs := &raftpb.HardState{Term: new(uint64(2)), Vote: new(uint64(1)), Commit: new(uint64(2))}
	ents := []*raftpb.Entry{
		{Index: new(uint64(1)), Term: new(uint64(2)), Data: []byte("put a=1")},
		{Index: new(uint64(2)), Term: new(uint64(2)), Data: []byte("put b=2")},
	}
	if err := l.Save(hs, ents, nil); err != nil {
		log.Fatal(err)
	}
	// Durable now: safe to send rd.Messages.
	if err := l.CreateSnapshot(1, &raftpb.ConfState{Voters: []uint64{1, 2, 3}}, []byte("a=1")); err != nil {
		log.Fatal(err)
	}
	if err := l.Compact(1); err != nil {
		log.Fatal(err)
	}
	l.Close()

	// Restart: pass l as raft.Config.Storage to raft.RestartNode.
	l, err = raftlog.Open(dir)
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	st, cs, _ := l.InitialState()
	snap, _ := l.Snapshot()
	first, _ := l.FirstIndex()
	last, _ := l.LastIndex()
	es, _ := l.Entries(first, last+1, 1<<20)
	fmt.Printf("term %d vote %d commit %d, voters %v\n", st.GetTerm(), st.GetVote(), st.GetCommit(), cs.GetVoters())
	fmt.Printf("snapshot at %d: %s\n", snap.GetMetadata().GetIndex(), snap.GetData())
	for _, e := range es {
		fmt.Printf("entry %d: %s\n", e.GetIndex(), e.GetData())
	}
	fmt.Println("clean recovery:", l.Recovered().Clean())
	// Output:
	// term 2 vote 1 commit 2, voters [1 2 3]
	// snapshot at 1: a=1
	// entry 2: put b=2
	// clean recovery: true
}

// Recovered reports a torn write that Open cut off the end of the WAL: a
// crash during a Save that had not returned.
func ExampleLog_Recovered() {
	dir, err := os.MkdirTemp("", "raftlog-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	l, err := raftlog.Open(dir)
	if err != nil {
		log.Fatal(err)
	}
	hs := &raftpb.HardState{Term: new(uint64(1)), Commit: new(uint64(1))}
	if err := l.Save(hs, []*raftpb.Entry{{Index: new(uint64(1)), Term: new(uint64(1))}}, nil); err != nil {
		log.Fatal(err)
	}
	l.Close()

	// Simulate a crash in the middle of the next write: half a record.
	segs, _ := filepath.Glob(filepath.Join(dir, "*.wal"))
	f, err := os.OpenFile(segs[len(segs)-1], os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		log.Fatal(err)
	}
	f.Write([]byte{2, 40, 0, 0, 0, 1, 2})
	f.Close()

	l, err = raftlog.Open(dir)
	if err != nil {
		log.Fatal(err) // damage other than a torn tail would be an ErrCorrupt here
	}
	defer l.Close()
	if t := l.Recovered().Torn; t != nil {
		fmt.Printf("cut %d bytes off %s\n", t.Dropped, filepath.Base(t.File))
	}
	last, _ := l.LastIndex()
	fmt.Println("last index:", last)
	// Output:
	// cut 7 bytes off 0000000000000000-0000000000000000.wal
	// last index: 1
}
