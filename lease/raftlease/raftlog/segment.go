package raftlog

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"

	"go.etcd.io/raft/v3/raftpb"
)

// segment is one WAL file on disk, as known to the writer.
type segment struct {
	seq       uint64
	prevIndex uint64
	path      string
}

// walRecord is one committed record found by scanSegment.
type walRecord struct {
	typ     recordType
	payload []byte // aliases the segment's bytes
	off     int64
}

// segmentScan is what scanSegment learns from one segment's bytes.
type segmentScan struct {
	header  segmentHeader
	records []walRecord // committed records after the header, commits left out
	end     int64       // end of the last complete batch
	torn    *TornTail   // set when bytes after end must be dropped
}

// scanSegment splits a segment into records and decides what to do with
// anything after the last complete batch.
//
// The rules, which are the recovery contract documented in the package doc:
//   - the segment must begin with a valid header for seq;
//   - if the bytes after the last complete batch contain a record that
//     fails to decode, and a valid record starts anywhere after that point,
//     the damage is not a torn write: ErrCorrupt at the failing offset;
//   - otherwise the tail is a torn write. In the last segment it is
//     reported for truncation; in any other segment it is ErrCorrupt,
//     because a segment is only closed after its last batch was synced.
func scanSegment(path string, b []byte, seq uint64, last bool) (*segmentScan, error) {
	seed := segmentSeed(seq)
	t, p, n, err := decodeRecord(b, seed)
	if err != nil {
		return nil, corruptf(path, 0, "segment header: %v", err)
	}
	if t != recSegment {
		return nil, corruptf(path, 0, "segment starts with a %v record, not a header", t)
	}
	h, err := unmarshalSegmentHeader(p)
	if err != nil {
		return nil, corruptf(path, 0, "%v", err)
	}
	if h.Seq != seq {
		return nil, corruptf(path, 0, "segment header says sequence %d, name says %d", h.Seq, seq)
	}
	s := &segmentScan{header: h, end: int64(n)}
	off := n
	var pending []walRecord
	var fail error
	for off < len(b) {
		t, p, n, err := decodeRecord(b[off:], seed)
		if err != nil {
			fail = err
			break
		}
		switch t {
		case recSegment:
			return nil, corruptf(path, int64(off), "segment header in the middle of a segment")
		case recCommit:
			if len(p) != 0 {
				return nil, corruptf(path, int64(off), "commit record with a %d-byte payload", len(p))
			}
			s.records = append(s.records, pending...)
			pending = pending[:0]
			off += n
			s.end = int64(off)
			continue
		}
		pending = append(pending, walRecord{typ: t, payload: p, off: int64(off)})
		off += n
	}
	if s.end == int64(len(b)) {
		return s, nil
	}
	reason := fmt.Sprintf("%d records after the last commit, no commit record", len(pending))
	if fail != nil {
		switch q, found := findRecord(b, off+1, seed); found {
		case recordFound:
			return nil, corruptf(path, int64(off), "%v, but a valid record follows at offset %d", fail, q)
		case searchExhausted:
			return nil, corruptf(path, int64(off), "%v, and the %d bytes after it are too costly to search for valid records; refusing to cut them",
				fail, len(b)-off)
		}
		reason = fmt.Sprintf("%v at offset %d", fail, off)
	}
	if !last {
		at := s.end
		if fail != nil {
			at = int64(off)
		}
		return nil, corruptf(path, at, "segment is not the last one but ends with an incomplete batch: %s", reason)
	}
	s.torn = &TornTail{File: path, Offset: s.end, Dropped: int64(len(b)) - s.end, Reason: reason}
	return s, nil
}

type searchResult int

const (
	noRecord searchResult = iota
	recordFound
	searchExhausted
)

// findRecord reports the first offset >= from at which a valid record
// starts. Used only after a failure, to tell damage from a torn tail.
//
// Each candidate offset whose header looks plausible costs a checksum over
// its claimed length, so random bytes could make the search quadratic. It
// gives up after checksumming 16 times the segment size (plus 16 MiB),
// and the caller then refuses to cut the tail rather than guess.
func findRecord(b []byte, from int, seed uint32) (int, searchResult) {
	budget := 16*len(b) + 16<<20
	for q := from; q+recordHeaderSize <= len(b); q++ {
		if t := recordType(b[q]); t == 0 || t > maxRecordType {
			continue
		}
		size := int(binary.LittleEndian.Uint32(b[q+1 : q+5]))
		if size > MaxRecordSize || q+recordHeaderSize+size > len(b) {
			continue
		}
		if budget -= size + recordHeaderSize; budget < 0 {
			return 0, searchExhausted
		}
		if _, _, _, err := decodeRecord(b[q:], seed); err == nil {
			return q, recordFound
		}
	}
	return 0, noRecord
}

// createSegment writes a new segment holding its header and, if hs is not
// empty, the hard state, as one committed batch. It is built under a
// temporary name, synced, renamed and the directory synced, so a segment
// file that exists always has a complete header. The returned file is
// positioned at its end, ready for appends; its Name is the temporary
// name, so callers use the returned segment's path.
func createSegment(dir string, h segmentHeader, hs *raftpb.HardState) (*os.File, segment, int64, error) {
	seed := segmentSeed(h.Seq)
	buf := appendRecord(nil, seed, recSegment, h.marshal())
	if hs != nil && (hs.GetTerm() != 0 || hs.GetVote() != 0 || hs.GetCommit() != 0) {
		p, err := marshalOpts.Marshal(hs)
		if err != nil {
			return nil, segment{}, 0, fmt.Errorf("raftlog: marshal hard state: %w", err)
		}
		buf = appendRecord(buf, seed, recHardState, p)
	}
	buf = appendRecord(buf, seed, recCommit, nil)

	final := filepath.Join(dir, segmentName(h.Seq, h.PrevIndex))
	tmp := final + ".tmp"
	// Created afresh (O_EXCL follows no symbolic link): whatever is at
	// the temporary name is removed, never written through.
	if err := os.Remove(tmp); err != nil && !os.IsNotExist(err) {
		return nil, segment{}, 0, fmt.Errorf("raftlog: create segment: %w", err)
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, segment{}, 0, fmt.Errorf("raftlog: create segment: %w", err)
	}
	fail := func(err error) (*os.File, segment, int64, error) {
		f.Close()
		os.Remove(tmp)
		return nil, segment{}, 0, fmt.Errorf("raftlog: create segment %s: %w", final, err)
	}
	if _, err := f.Write(buf); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return fail(err)
	}
	if err := syncDir(dir); err != nil {
		f.Close()
		return nil, segment{}, 0, err
	}
	return f, segment{seq: h.Seq, prevIndex: h.PrevIndex, path: final}, int64(len(buf)), nil
}
