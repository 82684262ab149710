package raftlog

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// recordSeeds returns well-formed records of every type plus damaged
// variants, so that the seed corpus exercises every decoder branch.
func recordSeeds(t testing.TB) [][]byte {
	seed := segmentSeed(3)
	m := func(msg proto.Message) []byte {
		b, err := marshalOpts.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good := [][]byte{
		appendRecord(nil, seed, recSegment, segmentHeader{Seq: 3, PrevIndex: 10, PrevTerm: 2, SnapIndex: 5, SnapTerm: 1}.marshal()),
		appendRecord(nil, seed, recEntry, m(ent(11, 2, "hello"))),
		appendRecord(nil, seed, recEntry, m(&raftpb.Entry{Index: new(uint64(12)), Term: new(uint64(2)), Type: raftpb.EntryConfChange.Enum()})),
		appendRecord(nil, seed, recHardState, m(hardState(2, 1, 11))),
		appendRecord(nil, seed, recSnapshotReset, m(&raftpb.SnapshotMetadata{Index: new(uint64(20)), Term: new(uint64(3))})),
		appendRecord(nil, seed, recSnapshotLocal, m(&raftpb.SnapshotMetadata{Index: new(uint64(11)), Term: new(uint64(2))})),
		appendRecord(nil, seed, recCommit, nil),
	}
	out := append([][]byte{}, good...)
	for _, g := range good {
		out = append(out, g[:len(g)-1])           // short payload
		out = append(out, g[:recordHeaderSize-2]) // short header
		flipped := bytes.Clone(g)                 // bad CRC
		flipped[len(flipped)-1] ^= 0x40           //
		out = append(out, flipped, append(bytes.Clone(g), 0, 0, 0))
	}
	out = append(out, nil, make([]byte, 32), []byte{7, 0, 0, 0, 0, 0, 0, 0, 0}, []byte{2, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	return out
}

// FuzzDecodeRecord: the record decoder never panics, never reads past its
// input, and whatever it accepts re-encodes to the same bytes. A payload
// that decodes as its raftpb type re-encodes to an equal message.
func FuzzDecodeRecord(f *testing.F) {
	for _, s := range recordSeeds(f) {
		f.Add(s, uint64(3))
	}
	f.Fuzz(func(t *testing.T, b []byte, seq uint64) {
		seed := segmentSeed(seq)
		typ, payload, n, err := decodeRecord(b, seed)
		if err != nil {
			return
		}
		if n > len(b) || n != recordHeaderSize+len(payload) {
			t.Fatalf("decodeRecord consumed %d of %d bytes with a %d-byte payload", n, len(b), len(payload))
		}
		if re := appendRecord(nil, seed, typ, payload); !bytes.Equal(re, b[:n]) {
			t.Fatalf("re-encoding differs:\n in: %x\nout: %x", b[:n], re)
		}
		switch typ {
		case recSegment:
			h, err := unmarshalSegmentHeader(payload)
			if err == nil && !bytes.Equal(h.marshal(), payload) {
				t.Fatalf("segment header re-encodes differently: %+v", h)
			}
		case recEntry, recHardState, recSnapshotReset, recSnapshotLocal:
			ev, err := decodeEvent("fuzz", walRecord{typ: typ, payload: payload})
			if err != nil {
				return
			}
			var msg proto.Message
			switch {
			case ev.ent != nil:
				msg = ev.ent
			case ev.hs != nil:
				msg = ev.hs
			default:
				msg = &raftpb.SnapshotMetadata{Index: new(ev.index), Term: new(ev.term)}
			}
			re, err := marshalOpts.Marshal(msg)
			if err != nil {
				t.Fatalf("re-marshal %v: %v", typ, err)
			}
			back, err := decodeEvent("fuzz", walRecord{typ: typ, payload: re})
			if err != nil {
				t.Fatalf("re-encoded %v does not decode: %v", typ, err)
			}
			if !proto.Equal(ev.ent, back.ent) || !proto.Equal(ev.hs, back.hs) || ev.index != back.index || ev.term != back.term {
				t.Fatalf("%v round trip differs", typ)
			}
		}
	})
}

// FuzzScanSegment: scanning arbitrary segment bytes never panics, and a
// successful scan is self-consistent: a torn tail only in the last
// segment, exactly covering the bytes after the last complete batch, and
// the kept prefix scans cleanly to the same records.
func FuzzScanSegment(f *testing.F) {
	seed := segmentSeed(0)
	seg := appendRecord(nil, seed, recSegment, segmentHeader{}.marshal())
	seg = appendRecord(seg, seed, recCommit, nil)
	for _, r := range recordSeeds(f)[1:7] { // re-seal the good records for segment 0
		typ, payload, _, err := decodeRecord(r, segmentSeed(3))
		if err != nil || typ == recSegment {
			continue
		}
		seg = appendRecord(seg, seed, typ, payload)
	}
	seg = appendRecord(seg, seed, recCommit, nil)
	f.Add(seg, true)
	f.Add(seg, false)
	f.Add(seg[:len(seg)-3], true)
	f.Add(append(bytes.Clone(seg), make([]byte, 100)...), true)
	mid := bytes.Clone(seg)
	mid[segmentPreambleLen+recordHeaderSize+12] ^= 1
	f.Add(mid, true)
	f.Add([]byte{}, true)
	f.Fuzz(func(t *testing.T, b []byte, last bool) {
		sc, err := scanSegment("fuzz.wal", b, 0, last)
		if err != nil {
			return
		}
		if sc.end > int64(len(b)) {
			t.Fatalf("end %d beyond %d bytes", sc.end, len(b))
		}
		if sc.torn == nil {
			if sc.end != int64(len(b)) {
				t.Fatalf("clean scan ends at %d of %d", sc.end, len(b))
			}
			return
		}
		if !last {
			t.Fatal("torn tail reported for a segment that is not the last")
		}
		if sc.torn.Offset != sc.end || sc.torn.Offset+sc.torn.Dropped != int64(len(b)) {
			t.Fatalf("torn tail %+v does not cover [%d, %d)", sc.torn, sc.end, len(b))
		}
		again, err := scanSegment("fuzz.wal", b[:sc.end], 0, false)
		if err != nil || again.torn != nil || len(again.records) != len(sc.records) {
			t.Fatalf("kept prefix does not rescan cleanly: %v %+v", err, again)
		}
	})
}

// FuzzDecodeSnapshotFile: the snapshot decoder never panics, whatever it
// accepts re-encodes to the same bytes, and a body that decodes as a
// raftpb.Snapshot re-encodes to an equal message.
func FuzzDecodeSnapshotFile(f *testing.F) {
	snap := &raftpb.Snapshot{
		Data: []byte("state machine"),
		Metadata: &raftpb.SnapshotMetadata{
			Index: new(uint64(42)), Term: new(uint64(7)),
			ConfState: &raftpb.ConfState{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}, AutoLeave: new(false)},
		},
	}
	body, err := marshalOpts.Marshal(snap)
	if err != nil {
		f.Fatal(err)
	}
	file := encodeSnapshotFile(body)
	f.Add(file)
	f.Add(encodeSnapshotFile(nil))
	f.Add(file[:len(file)-1])
	f.Add(file[:snapHeaderSize-1])
	flipped := bytes.Clone(file)
	flipped[snapHeaderSize+3] ^= 0x10
	f.Add(flipped)
	f.Add(append(bytes.Clone(file), 0))
	f.Add([]byte(snapMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		body, err := decodeSnapshotFile(b)
		if err != nil {
			return
		}
		if re := encodeSnapshotFile(body); !bytes.Equal(re, b) {
			t.Fatalf("re-encoding differs:\n in: %x\nout: %x", b, re)
		}
		s, err := unmarshalSnapshot(body)
		if err != nil {
			return
		}
		re, err := marshalOpts.Marshal(s)
		if err != nil {
			t.Fatalf("re-marshal: %v", err)
		}
		back, err := unmarshalSnapshot(re)
		if err != nil || !proto.Equal(s, back) {
			t.Fatalf("snapshot round trip differs: %v", err)
		}
	})
}

// FuzzOpen frames arbitrary record sequences with valid checksums into
// WAL segments, so that the fuzzer reaches the replay rather than
// stopping at the checksum. Open must not panic; it either fails with
// ErrCorrupt or yields a state raft can start from: entries readable from
// FirstIndex to LastIndex, and a commit index within the log.
//
// The input is a list of records, each: segment break flag (1 byte),
// type (1 byte), payload length (1 byte), payload.
func FuzzOpen(f *testing.F) {
	m := func(msg proto.Message) []byte {
		b, _ := marshalOpts.Marshal(msg)
		return b
	}
	rec := func(brk bool, t recordType, p []byte) []byte {
		b := []byte{0, byte(t), byte(len(p))}
		if brk {
			b[0] = 1
		}
		return append(b, p...)
	}
	var seed []byte
	seed = append(seed, rec(false, recEntry, m(ent(1, 1, "a")))...)
	seed = append(seed, rec(false, recEntry, m(ent(2, 1, "b")))...)
	seed = append(seed, rec(false, recHardState, m(hardState(1, 1, 2)))...)
	seed = append(seed, rec(false, recCommit, nil)...)
	seed = append(seed, rec(true, recEntry, m(ent(3, 2, "c")))...)
	seed = append(seed, rec(false, recEntry, m(ent(2, 2, "b2")))...)
	seed = append(seed, rec(false, recSnapshotLocal, m(&raftpb.SnapshotMetadata{Index: new(uint64(2)), Term: new(uint64(2))}))...)
	seed = append(seed, rec(false, recHardState, m(hardState(2, 1, 9)))...)
	f.Add(seed)
	f.Add(rec(false, recSnapshotReset, m(&raftpb.SnapshotMetadata{Index: new(uint64(5)), Term: new(uint64(1))})))
	f.Add(rec(false, recEntry, m(ent(7, 1, "gap"))))
	f.Fuzz(func(t *testing.T, in []byte) {
		dir := t.TempDir()
		// Build segments: every segment's header claims the log so far
		// ended at the last entry index written, as a writer would.
		var seq, last, lastTerm uint64
		seg := appendRecord(nil, segmentSeed(0), recSegment, segmentHeader{}.marshal())
		seg = appendRecord(seg, segmentSeed(0), recCommit, nil)
		var prev uint64
		flush := func() {
			if err := os.WriteFile(filepath.Join(dir, segmentName(seq, prev)), seg, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		for len(in) >= 3 {
			brk, typ, n := in[0] == 1, recordType(in[1]%byte(maxRecordType+1)), int(in[2])
			in = in[3:]
			n = min(n, len(in))
			p := in[:n]
			in = in[n:]
			if typ == 0 || typ == recSegment {
				continue
			}
			if brk {
				seg = appendRecord(seg, segmentSeed(seq), recCommit, nil)
				flush()
				seq++
				prev = last
				seg = appendRecord(nil, segmentSeed(seq), recSegment, segmentHeader{Seq: seq, PrevIndex: last, PrevTerm: lastTerm}.marshal())
				seg = appendRecord(seg, segmentSeed(seq), recCommit, nil)
			}
			if typ == recEntry {
				e := new(raftpb.Entry)
				if proto.Unmarshal(p, e) == nil && e.GetIndex() > 0 {
					last, lastTerm = e.GetIndex(), e.GetTerm()
				}
			}
			seg = appendRecord(seg, segmentSeed(seq), typ, p)
		}
		flush()

		l, err := Open(dir)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open failed without ErrCorrupt: %v", err)
			}
			return
		}
		defer l.Close()
		hs, _, _ := l.InitialState()
		first, _ := l.FirstIndex()
		lastIdx, _ := l.LastIndex()
		if hs.GetCommit() > lastIdx {
			t.Fatalf("commit %d beyond last index %d", hs.GetCommit(), lastIdx)
		}
		if lastIdx >= first {
			es, err := l.Entries(first, lastIdx+1, ^uint64(0))
			if err != nil || uint64(len(es)) != lastIdx-first+1 {
				t.Fatalf("Entries(%d, %d): %d entries, %v", first, lastIdx+1, len(es), err)
			}
			for k, e := range es {
				if e.GetIndex() != first+uint64(k) {
					t.Fatalf("entry %d at position of %d", e.GetIndex(), first+uint64(k))
				}
			}
		}
		// The recovered log accepts an append and reopens to the same state.
		if err := l.Save(nil, []*raftpb.Entry{ent(lastIdx+1, max(hs.GetTerm(), 1), "next")}, nil); err != nil {
			t.Fatalf("Save after recovery: %v", err)
		}
		want := stateOf(t, l)
		l.Close()
		l2, err := Open(dir)
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		defer l2.Close()
		diffState(t, stateOf(t, l2), want)
	})
}
