// Package wire holds the pieces shared by replicate's checksummed record
// encodings (the checkpoint, filesink's state): length-prefixed fields.
package wire

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// AppendField appends f to b behind its 4-byte big-endian length.
func AppendField(b, f []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
	return append(b, f...)
}

// CutField splits a field written by AppendField off b and returns a copy
// of it (nil if empty) and the bytes after it. A length that is cut short,
// exceeds max or runs past the end of b is an error wrapping kind that
// names the field.
func CutField(b []byte, name string, max uint32, kind error) (field, rest []byte, err error) {
	if len(b) < 4 {
		return nil, nil, fmt.Errorf("%w: %s length cut short", kind, name)
	}
	n := binary.BigEndian.Uint32(b)
	b = b[4:]
	if n > max || uint64(n) > uint64(len(b)) {
		return nil, nil, fmt.Errorf("%w: %s length %d exceeds the %d bytes left", kind, name, n, len(b))
	}
	if n == 0 {
		return nil, b, nil
	}
	return bytes.Clone(b[:n]), b[n:], nil
}
