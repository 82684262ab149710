package pgcdc

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// wreader reads one pgoutput message with bounds checks.
type wreader struct {
	b   []byte
	off int
	typ byte
}

func (m *wreader) fail(format string, args ...any) error {
	return fmt.Errorf("%w: message %q (%d bytes) at byte %d: %s", ErrProtocol, m.typ, len(m.b), m.off, fmt.Sprintf(format, args...))
}

func (m *wreader) need(n int) error {
	if n < 0 || len(m.b)-m.off < n {
		return m.fail("truncated: need %d bytes, %d left", n, len(m.b)-m.off)
	}
	return nil
}

func (m *wreader) byte() (byte, error) {
	if err := m.need(1); err != nil {
		return 0, err
	}
	m.off++
	return m.b[m.off-1], nil
}

func (m *wreader) uint16() (uint16, error) {
	if err := m.need(2); err != nil {
		return 0, err
	}
	m.off += 2
	return binary.BigEndian.Uint16(m.b[m.off-2:]), nil
}

func (m *wreader) uint32() (uint32, error) {
	if err := m.need(4); err != nil {
		return 0, err
	}
	m.off += 4
	return binary.BigEndian.Uint32(m.b[m.off-4:]), nil
}

func (m *wreader) uint64() (uint64, error) {
	if err := m.need(8); err != nil {
		return 0, err
	}
	m.off += 8
	return binary.BigEndian.Uint64(m.b[m.off-8:]), nil
}

func (m *wreader) cstring() (string, error) {
	i := bytes.IndexByte(m.b[m.off:], 0)
	if i < 0 {
		return "", m.fail("unterminated string")
	}
	s := string(m.b[m.off : m.off+i])
	m.off += i + 1
	return s, nil
}

// tuple checks a tuple of n columns and moves past it. It returns the
// offset of its first value, after the column count.
func (m *wreader) tuple(n int) (int, error) {
	cols, err := m.uint16()
	if err != nil {
		return 0, err
	}
	if int(cols) != n {
		return 0, m.fail("tuple of %d columns, the relation has %d", cols, n)
	}
	start := m.off
	for i := range n {
		k, err := m.byte()
		if err != nil {
			return 0, err
		}
		switch k {
		case 'n', 'u':
		case 't':
			l, err := m.uint32()
			if err != nil {
				return 0, err
			}
			if err := m.need(int(l)); err != nil {
				return 0, err
			}
			m.off += int(l)
		case 'b':
			return 0, m.fail("column %d: binary value, not requested", i)
		default:
			return 0, m.fail("column %d: unknown value kind %q", i, k)
		}
	}
	return start, nil
}

func (m *wreader) end() error {
	if m.off != len(m.b) {
		return m.fail("%d trailing bytes", len(m.b)-m.off)
	}
	return nil
}
