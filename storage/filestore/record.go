package filestore

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/hakit/hakit/storage"
)

// Every file the store writes is one record:
//
//	offset  size  field
//	0       4     magic "hkfs"
//	4       1     format version (1)
//	5       1     kind: 1 key item, 2 version counter, 3 journal
//	6       2     reserved, zero
//	8       8     version, big-endian
//	16      4     key length, big-endian
//	20      4     value length, big-endian
//	24      k     key
//	24+k    v     value
//	24+k+v  4     CRC-32C (Castagnoli) of every byte before it
//
// The lengths must account for the file exactly, so a truncated or
// extended file is detected even before the checksum is.

const (
	recordMagic   = "hkfs"
	formatVersion = 1
	headerLen     = 24
	trailerLen    = 4
)

type kind byte

const (
	kindItem    kind = 1
	kindCounter kind = 2
	kindJournal kind = 3
)

func (k kind) String() string {
	switch k {
	case kindItem:
		return "key item"
	case kindCounter:
		return "version counter"
	case kindJournal:
		return "journal"
	}
	return fmt.Sprintf("kind %d", byte(k))
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// record is the decoded content of one file.
type record struct {
	kind    kind
	version storage.Version
	key     string
	value   []byte
}

func encodeRecord(r record) []byte {
	b := make([]byte, 0, headerLen+len(r.key)+len(r.value)+trailerLen)
	b = append(b, recordMagic...)
	b = append(b, formatVersion, byte(r.kind), 0, 0)
	b = binary.BigEndian.AppendUint64(b, uint64(r.version))
	b = binary.BigEndian.AppendUint32(b, uint32(len(r.key)))
	b = binary.BigEndian.AppendUint32(b, uint32(len(r.value)))
	b = append(b, r.key...)
	b = append(b, r.value...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// decodeRecord decodes the contents of the file at path, which must be a
// record of kind want. Every error wraps storage.ErrCorrupt and names the
// file and the offset of the field at fault. The returned value aliases b.
func decodeRecord(path string, b []byte, want kind) (record, error) {
	bad := func(off int, format string, args ...any) (record, error) {
		return record{}, fmt.Errorf("filestore: %s: offset %d: %s: %w", path, off, fmt.Sprintf(format, args...), storage.ErrCorrupt)
	}
	if len(b) < headerLen+trailerLen {
		return bad(0, "file has %d bytes, shorter than the smallest record (%d)", len(b), headerLen+trailerLen)
	}
	if string(b[:4]) != recordMagic {
		return bad(0, "magic %q, want %q", b[:4], recordMagic)
	}
	if b[4] != formatVersion {
		return bad(4, "format version %d, want %d", b[4], formatVersion)
	}
	if kind(b[5]) != want {
		return bad(5, "record is a %s, want a %s", kind(b[5]), want)
	}
	if b[6] != 0 || b[7] != 0 {
		return bad(6, "reserved bytes %x are not zero", b[6:8])
	}
	klen := uint64(binary.BigEndian.Uint32(b[16:20]))
	vlen := uint64(binary.BigEndian.Uint32(b[20:24]))
	if total := headerLen + klen + vlen + trailerLen; total != uint64(len(b)) {
		return bad(16, "key length %d and value length %d make a %d-byte record, but the file has %d bytes", klen, vlen, total, len(b))
	}
	end := len(b) - trailerLen
	if got, sum := crc32.Checksum(b[:end], castagnoli), binary.BigEndian.Uint32(b[end:]); got != sum {
		return bad(end, "checksum %08x does not match the contents (%08x): torn or corrupted write", sum, got)
	}
	r := record{
		kind:    want,
		version: storage.Version(binary.BigEndian.Uint64(b[8:16])),
		key:     string(b[headerLen : headerLen+klen]),
		value:   b[headerLen+klen : end],
	}
	switch want {
	case kindItem:
		if r.version == 0 {
			return bad(8, "version 0 on a stored key")
		}
		if err := storage.ValidateKey(r.key); err != nil {
			return bad(headerLen, "%v", err)
		}
	case kindJournal:
		if r.version == 0 {
			return bad(8, "version 0 on a journal")
		}
		fallthrough
	case kindCounter:
		if klen != 0 {
			return bad(16, "a %s has a key of %d bytes", want, klen)
		}
	}
	return r, nil
}

// A journal record's value lists the ops of one commit:
//
//	count u32, then per op: kind u8 (1 put, 2 delete), key length u32,
//	key, and for a put value length u32 and value.
const (
	opPut    = 1
	opDelete = 2
)

func encodeOps(ops []storage.Op) []byte {
	n := 4
	for _, op := range ops {
		n += 1 + 4 + len(op.Key) + 4 + len(op.Value)
	}
	b := make([]byte, 0, n)
	b = binary.BigEndian.AppendUint32(b, uint32(len(ops)))
	for _, op := range ops {
		if op.Delete {
			b = append(b, opDelete)
		} else {
			b = append(b, opPut)
		}
		b = binary.BigEndian.AppendUint32(b, uint32(len(op.Key)))
		b = append(b, op.Key...)
		if !op.Delete {
			b = binary.BigEndian.AppendUint32(b, uint32(len(op.Value)))
			b = append(b, op.Value...)
		}
	}
	return b
}

// decodeOps decodes a journal's op list; path names the journal in
// errors, and offsets count from the start of the list. The values alias
// b. It rejects trailing bytes, invalid keys and repeated keys.
func decodeOps(path string, b []byte) ([]storage.Op, error) {
	off := 0
	bad := func(format string, args ...any) ([]storage.Op, error) {
		return nil, fmt.Errorf("filestore: %s: journal op list offset %d: %s: %w", path, off, fmt.Sprintf(format, args...), storage.ErrCorrupt)
	}
	u32 := func() (uint32, bool) {
		if len(b)-off < 4 {
			return 0, false
		}
		v := binary.BigEndian.Uint32(b[off:])
		off += 4
		return v, true
	}
	count, ok := u32()
	if !ok {
		return bad("too short for the op count")
	}
	// Each op takes at least 6 bytes; a count beyond that is garbage and
	// must not drive an allocation.
	if uint64(count) > uint64(len(b))/6 {
		return bad("%d ops cannot fit in %d bytes", count, len(b))
	}
	ops := make([]storage.Op, 0, count)
	seen := make(map[string]bool, count)
	for range count {
		if off >= len(b) {
			return bad("op list ends early")
		}
		k := b[off]
		if k != opPut && k != opDelete {
			return bad("op kind %d", k)
		}
		off++
		klen, ok := u32()
		if !ok || uint64(klen) > uint64(len(b)-off) {
			return bad("key length runs past the end")
		}
		key := string(b[off : off+int(klen)])
		if err := storage.ValidateKey(key); err != nil {
			return bad("%v", err)
		}
		if seen[key] {
			return bad("key %q appears twice", key)
		}
		seen[key] = true
		off += int(klen)
		op := storage.Op{Key: key, Delete: k == opDelete}
		if !op.Delete {
			vlen, ok := u32()
			if !ok || uint64(vlen) > uint64(len(b)-off) {
				return bad("value length runs past the end")
			}
			op.Value = b[off : off+int(vlen)]
			off += int(vlen)
		}
		ops = append(ops, op)
	}
	if off != len(b) {
		return bad("%d bytes after the last op", len(b)-off)
	}
	return ops, nil
}
