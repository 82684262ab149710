// Package filelog is a replication Source that reads an append-only log
// kept as a directory of segment files, and the Writer that produces such
// logs.
//
// # Format
//
// A log is a directory of segment files named by a 20-digit decimal
// segment number and ".log" ("00000000000000000001.log"), numbered from 1
// without gaps. Each segment starts with a HeaderLen-byte header (magic
// "hklg", format version, the segment number, a CRC-32C) followed by
// records framed as
//
//	length[4] crc32c(data)[4] data[length]
//
// with big-endian integers. A Position is the segment number and the byte
// offset just after a record, 8 bytes each, big-endian, so positions
// order by their bytes (replicate.CompareBytes) across segments.
//
// # Errors
//
// Damage is reported, never skipped: a record whose checksum does not
// match, a length beyond MaxRecordSize, a segment shorter than a position
// that was read from it (truncation), an incomplete record at the end of a
// segment that has a successor, or a missing segment are errors that name
// the file and the offset.
package filelog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/hakit/hakit/replicate"
)

var (
	// ErrCorrupt is wrapped by errors about bytes that are not a valid
	// record, header or position.
	ErrCorrupt = errors.New("filelog: corrupt log")
	// ErrTruncated is wrapped by errors about a segment that is shorter
	// than a position read from it, or missing.
	ErrTruncated = errors.New("filelog: log truncated")
	// ErrShort is returned by DecodeRecord when b holds only the start of
	// a record: more bytes are needed, nothing is wrong yet.
	ErrShort = errors.New("filelog: incomplete record")
	// ErrConfig is wrapped by every error about WriterOptions or Source
	// fields out of range; each message reads "filelog: invalid config:
	// Field: rule".
	ErrConfig = errors.New("filelog: invalid config")
)

const (
	// HeaderLen is the length of a segment header; the first record of a
	// segment starts at this offset.
	HeaderLen = 20
	// FrameOverhead is the framing added to each record's data.
	FrameOverhead = 8
	// MaxRecordSize is the largest record a log may hold. A bigger length
	// field is damage, and the decoder says so instead of allocating.
	MaxRecordSize = 64 << 20
	// PositionLen is the length of an encoded Position.
	PositionLen = 16
	// Format is the segment format version.
	Format = 1
)

var (
	castagnoli  = crc32.MakeTable(crc32.Castagnoli)
	headerMagic = []byte("hklg")
)

// AppendRecord appends the framed encoding of data to dst.
func AppendRecord(dst, data []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(data)))
	dst = binary.BigEndian.AppendUint32(dst, crc32.Checksum(data, castagnoli))
	return append(dst, data...)
}

// DecodeRecord decodes the record at the start of b and returns its data
// (aliasing b) and the number of bytes it occupies. If b holds only part
// of a record it returns ErrShort and, when the length field is present,
// need: the total size the record will have. A length above MaxRecordSize
// or a checksum mismatch wraps ErrCorrupt.
func DecodeRecord(b []byte) (data []byte, n int, need int, err error) {
	if len(b) < FrameOverhead {
		return nil, 0, FrameOverhead, ErrShort
	}
	l := binary.BigEndian.Uint32(b)
	if l > MaxRecordSize {
		return nil, 0, 0, fmt.Errorf("%w: record length %d exceeds %d", ErrCorrupt, l, MaxRecordSize)
	}
	total := FrameOverhead + int(l)
	if len(b) < total {
		return nil, 0, total, ErrShort
	}
	data = b[FrameOverhead:total]
	if got, want := crc32.Checksum(data, castagnoli), binary.BigEndian.Uint32(b[4:]); got != want {
		return nil, 0, 0, fmt.Errorf("%w: record checksum %08x, computed %08x", ErrCorrupt, want, got)
	}
	return data, total, total, nil
}

// EncodePosition returns the Position of offset off in segment seg.
func EncodePosition(seg, off uint64) replicate.Position {
	p := make(replicate.Position, PositionLen)
	putPosition(p, seg, off)
	return p
}

func putPosition(p []byte, seg, off uint64) {
	binary.BigEndian.PutUint64(p, seg)
	binary.BigEndian.PutUint64(p[8:], off)
}

// DecodePosition returns the segment and offset of p. It accepts exactly
// what EncodePosition produces for a real place in a log: 16 bytes, a
// segment of at least 1 and an offset of at least HeaderLen. A nil
// Position (the beginning) is not accepted here; Source.Open handles it.
func DecodePosition(p replicate.Position) (seg, off uint64, err error) {
	if len(p) != PositionLen {
		return 0, 0, fmt.Errorf("%w: position of %d bytes, want %d", ErrCorrupt, len(p), PositionLen)
	}
	seg, off = binary.BigEndian.Uint64(p), binary.BigEndian.Uint64(p[8:])
	if seg == 0 || off < HeaderLen || off > 1<<62 {
		return 0, 0, fmt.Errorf("%w: position segment %d offset %d is not in any log", ErrCorrupt, seg, off)
	}
	return seg, off, nil
}

// encodeHeader returns the header of segment seg.
func encodeHeader(seg uint64) []byte {
	b := make([]byte, 0, HeaderLen)
	b = append(b, headerMagic...)
	b = append(b, Format, 0, 0, 0)
	b = binary.BigEndian.AppendUint64(b, seg)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// checkHeader verifies that b is the header of segment seg.
func checkHeader(b []byte, seg uint64) error {
	switch {
	case len(b) < HeaderLen:
		return fmt.Errorf("%w: header of %d bytes, want %d", ErrCorrupt, len(b), HeaderLen)
	case !bytes.Equal(b[:4], headerMagic):
		return fmt.Errorf("%w: magic %q, want %q", ErrCorrupt, b[:4], headerMagic)
	case b[4] != Format:
		return fmt.Errorf("%w: segment format %d, this code reads %d", ErrCorrupt, b[4], Format)
	}
	if got, want := crc32.Checksum(b[:16], castagnoli), binary.BigEndian.Uint32(b[16:]); got != want {
		return fmt.Errorf("%w: header checksum %08x, computed %08x", ErrCorrupt, want, got)
	}
	if got := binary.BigEndian.Uint64(b[8:]); got != seg {
		return fmt.Errorf("%w: header names segment %d, file name %d", ErrCorrupt, got, seg)
	}
	return nil
}

// SegmentName returns the file name of segment seg.
func SegmentName(seg uint64) string { return fmt.Sprintf("%020d.log", seg) }

func segmentPath(dir string, seg uint64) string { return filepath.Join(dir, SegmentName(seg)) }

// parseSegmentName returns the segment number of a file name, or false if
// the name is not a segment's.
func parseSegmentName(name string) (uint64, bool) {
	num, ok := strings.CutSuffix(name, ".log")
	if !ok || len(num) != 20 {
		return 0, false
	}
	seg, err := strconv.ParseUint(num, 10, 64)
	return seg, err == nil && seg > 0
}
