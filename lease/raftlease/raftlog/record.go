package raftlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// recordType tags the payload of a WAL record. Zero is deliberately invalid
// so that a zero-filled tail never decodes as a record.
type recordType uint8

const (
	// recSegment is the first record of every segment: segmentHeader.
	recSegment recordType = 1
	// recEntry carries one marshalled raftpb.Entry. Writing the entry at
	// index i discards every earlier-written entry at index >= i.
	recEntry recordType = 2
	// recHardState carries a marshalled raftpb.HardState; the last one wins.
	recHardState recordType = 3
	// recSnapshotReset carries the raftpb.SnapshotMetadata (index and term)
	// of a snapshot received through Save: the log restarts at it.
	recSnapshotReset recordType = 4
	// recSnapshotLocal carries the raftpb.SnapshotMetadata of a snapshot
	// taken by CreateSnapshot: it covers a prefix of the log and keeps it.
	recSnapshotLocal recordType = 5
	// recCommit ends a batch. Records after the last recCommit of the last
	// segment were never acknowledged and are dropped on recovery, so every
	// Save is all-or-nothing.
	recCommit recordType = 6

	maxRecordType = recCommit
)

func (t recordType) String() string {
	switch t {
	case recSegment:
		return "segment header"
	case recEntry:
		return "entry"
	case recHardState:
		return "hard state"
	case recSnapshotReset:
		return "snapshot (reset)"
	case recSnapshotLocal:
		return "snapshot (local)"
	case recCommit:
		return "commit"
	}
	return "unknown"
}

const (
	// recordHeaderSize is type (1) + payload length (4) + CRC (4).
	recordHeaderSize = 9
	// MaxRecordSize is the largest payload one WAL record may carry, and so
	// the largest marshalled raftpb.Entry that Save accepts. A length field
	// above it is treated as damage rather than as a request to read that
	// much.
	MaxRecordSize = 256 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Decoding failures. They are internal: the scanner turns them into an
// ErrCorrupt error or a torn-tail truncation with file and offset.
var (
	errShort   = errors.New("record extends past end of data")
	errBadType = errors.New("invalid record type")
	errTooBig  = errors.New("record length exceeds MaxRecordSize")
	errBadCRC  = errors.New("record checksum mismatch")
)

// segmentSeed is the CRC seed of every record in segment seq, so that a
// record copied from another segment does not verify.
func segmentSeed(seq uint64) uint32 {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], seq)
	return crc32.Checksum(b[:], castagnoli)
}

// appendRecord appends one framed record to dst:
//
//	type u8 | payload length u32 LE | CRC-32C u32 LE | payload
//
// The CRC, seeded with the segment's seed, covers type, length and payload.
func appendRecord(dst []byte, seed uint32, t recordType, payload []byte) []byte {
	var h [recordHeaderSize]byte
	h[0] = byte(t)
	binary.LittleEndian.PutUint32(h[1:5], uint32(len(payload)))
	crc := crc32.Update(seed, castagnoli, h[:5])
	crc = crc32.Update(crc, castagnoli, payload)
	binary.LittleEndian.PutUint32(h[5:9], crc)
	dst = append(dst, h[:]...)
	return append(dst, payload...)
}

// decodeRecord parses the record at the start of b. On success n is the
// number of bytes it occupies and payload aliases b. It never reads past b.
func decodeRecord(b []byte, seed uint32) (t recordType, payload []byte, n int, err error) {
	if len(b) < recordHeaderSize {
		return 0, nil, 0, errShort
	}
	t = recordType(b[0])
	if t == 0 || t > maxRecordType {
		return 0, nil, 0, errBadType
	}
	size := binary.LittleEndian.Uint32(b[1:5])
	if size > MaxRecordSize {
		return 0, nil, 0, errTooBig
	}
	n = recordHeaderSize + int(size)
	if len(b) < n {
		return 0, nil, 0, errShort
	}
	crc := crc32.Update(seed, castagnoli, b[:5])
	crc = crc32.Update(crc, castagnoli, b[recordHeaderSize:n])
	if crc != binary.LittleEndian.Uint32(b[5:9]) {
		return 0, nil, 0, errBadCRC
	}
	return t, b[recordHeaderSize:n], n, nil
}

// segmentHeader is the payload of recSegment. It lets recovery check that
// segments join up and lets Compact decide which segments are covered by a
// snapshot without reading them.
type segmentHeader struct {
	Seq       uint64 // position in the sequence of segments, from 0
	PrevIndex uint64 // last log index when the segment was started
	PrevTerm  uint64 // term of PrevIndex
	SnapIndex uint64 // newest durable snapshot when the segment was started
	SnapTerm  uint64
}

const (
	segmentMagic       = "HKRLWAL\x00"
	segmentVersion     = 1
	segmentHeaderSize  = 8 + 4 + 5*8
	segmentPreambleLen = recordHeaderSize + segmentHeaderSize
)

var errBadHeader = errors.New("bad segment header")

func (h segmentHeader) marshal() []byte {
	b := make([]byte, segmentHeaderSize)
	copy(b, segmentMagic)
	binary.LittleEndian.PutUint32(b[8:12], segmentVersion)
	binary.LittleEndian.PutUint64(b[12:20], h.Seq)
	binary.LittleEndian.PutUint64(b[20:28], h.PrevIndex)
	binary.LittleEndian.PutUint64(b[28:36], h.PrevTerm)
	binary.LittleEndian.PutUint64(b[36:44], h.SnapIndex)
	binary.LittleEndian.PutUint64(b[44:52], h.SnapTerm)
	return b
}

func unmarshalSegmentHeader(b []byte) (segmentHeader, error) {
	if len(b) != segmentHeaderSize || string(b[:8]) != segmentMagic {
		return segmentHeader{}, errBadHeader
	}
	if v := binary.LittleEndian.Uint32(b[8:12]); v != segmentVersion {
		return segmentHeader{}, fmt.Errorf("%w: unsupported version %d", errBadHeader, v)
	}
	return segmentHeader{
		Seq:       binary.LittleEndian.Uint64(b[12:20]),
		PrevIndex: binary.LittleEndian.Uint64(b[20:28]),
		PrevTerm:  binary.LittleEndian.Uint64(b[28:36]),
		SnapIndex: binary.LittleEndian.Uint64(b[36:44]),
		SnapTerm:  binary.LittleEndian.Uint64(b[44:52]),
	}, nil
}
