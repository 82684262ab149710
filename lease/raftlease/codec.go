package raftlease

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/storage"
)

// The byte formats in this file are what the group writes into its Raft
// log and snapshots, and what members exchange in configuration changes.
// Every member must decode them identically, so they are fixed-width or
// length-prefixed big-endian encodings with no maps iterated in random
// order, and every decoder refuses trailing or missing bytes.

// ErrCorrupt is wrapped by errors for log entries, snapshots and frames
// that cannot be decoded.
var ErrCorrupt = errors.New("raftlease: corrupt data")

const commandFormat = 1

type opKind byte

const (
	opPut       opKind = 1 // store value under key
	opCAS       opKind = 2 // store value under key if its version is old
	opDelete    opKind = 3 // remove key
	opCandidate opKind = 4 // member wants (on) or no longer wants the lease
	opHolder    opKind = 5 // member holds the lease in Raft term term
	opLogged    opKind = 6 // member holds a log the group counts on
)

func (k opKind) String() string {
	switch k {
	case opPut:
		return "put"
	case opCAS:
		return "compare-and-swap"
	case opDelete:
		return "delete"
	case opCandidate:
		return "candidate"
	case opHolder:
		return "holder"
	case opLogged:
		return "logged"
	}
	return fmt.Sprintf("op(%d)", byte(k))
}

// command is one entry of the replicated state machine. origin, nonce and
// seq identify the proposal so that the proposing member can hand the
// result of its application back to the caller waiting for it.
type command struct {
	kind   opKind
	origin uint64 // Raft ID of the proposing member
	nonce  uint64 // the proposer's incarnation, random at each start
	seq    uint64 // the proposal's number within the incarnation

	token fence.Token     // put, cas, delete
	key   string          // put, cas, delete
	old   storage.Version // cas
	value []byte          // put, cas

	member uint64 // candidate, holder, logged
	on     bool   // candidate
	term   uint64 // holder
	addr   string // holder: its advertised API address (Config.APIAddr), "" for none
}

func (c *command) encode() []byte {
	b := make([]byte, 0, 64+len(c.key)+len(c.value))
	b = append(b, commandFormat, byte(c.kind))
	b = binary.BigEndian.AppendUint64(b, c.origin)
	b = binary.BigEndian.AppendUint64(b, c.nonce)
	b = binary.BigEndian.AppendUint64(b, c.seq)
	switch c.kind {
	case opPut, opCAS, opDelete:
		b = binary.BigEndian.AppendUint64(b, uint64(c.token))
		b = appendString(b, c.key)
		if c.kind == opCAS {
			b = binary.BigEndian.AppendUint64(b, uint64(c.old))
		}
		if c.kind != opDelete {
			b = appendBytes(b, c.value)
		}
	case opCandidate:
		b = binary.BigEndian.AppendUint64(b, c.member)
		if c.on {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
	case opHolder:
		b = binary.BigEndian.AppendUint64(b, c.member)
		b = binary.BigEndian.AppendUint64(b, c.term)
		if c.addr != "" {
			// Absent when empty: a record without an address keeps the
			// encoding it had before addresses were carried.
			b = appendString(b, c.addr)
		}
	case opLogged:
		b = binary.BigEndian.AppendUint64(b, c.member)
	}
	return b
}

func decodeCommand(data []byte) (command, error) {
	d := decoder{b: data}
	var c command
	if f := d.byte(); d.err == nil && f != commandFormat {
		return c, fmt.Errorf("%w: command format %d, want %d", ErrCorrupt, f, commandFormat)
	}
	c.kind = opKind(d.byte())
	c.origin = d.u64()
	c.nonce = d.u64()
	c.seq = d.u64()
	switch c.kind {
	case opPut, opCAS, opDelete:
		c.token = fence.Token(d.u64())
		c.key = d.string(storage.MaxKeyLen)
		if c.kind == opCAS {
			c.old = storage.Version(d.u64())
		}
		if c.kind != opDelete {
			c.value = d.bytes(maxValueLimit)
		}
	case opCandidate:
		c.member = d.u64()
		switch d.byte() {
		case 0:
		case 1:
			c.on = true
		default:
			d.fail("candidate flag is neither 0 nor 1")
		}
	case opHolder:
		c.member = d.u64()
		c.term = d.u64()
		if d.err == nil && d.off < len(d.b) {
			if c.addr = d.string(maxAddrLen); d.err == nil && c.addr == "" {
				d.fail("empty holder address is encoded by omission")
			}
		}
	case opLogged:
		c.member = d.u64()
	default:
		if d.err == nil {
			d.fail(fmt.Sprintf("unknown command kind %d", byte(c.kind)))
		}
	}
	if err := d.finish("command"); err != nil {
		return command{}, err
	}
	return c, nil
}

// memberInfo is what the group knows about a member: its name and the
// address its transport listens on. It travels in the Context of the
// configuration change that adds the member.
type memberInfo struct {
	ID   string
	Addr string
}

const memberFormat = 1

func (m memberInfo) encode() []byte {
	b := []byte{memberFormat}
	b = appendString(b, m.ID)
	return appendString(b, m.Addr)
}

func decodeMemberInfo(data []byte) (memberInfo, error) {
	d := decoder{b: data}
	if f := d.byte(); d.err == nil && f != memberFormat {
		return memberInfo{}, fmt.Errorf("%w: member record format %d, want %d", ErrCorrupt, f, memberFormat)
	}
	m := memberInfo{ID: d.string(maxMemberIDLen), Addr: d.string(maxAddrLen)}
	if err := d.finish("member record"); err != nil {
		return memberInfo{}, err
	}
	if m.ID == "" {
		return memberInfo{}, fmt.Errorf("%w: member record with an empty ID", ErrCorrupt)
	}
	return m, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b []byte, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// decoder reads the encodings above. The first error sticks; later reads
// return zero values. Lengths are checked against both a per-field limit
// and the bytes that remain before anything is allocated.
type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) fail(msg string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s at byte %d", ErrCorrupt, msg, d.off)
	}
}

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || len(d.b)-d.off < n {
		d.fail(fmt.Sprintf("need %d bytes, %d left", n, len(d.b)-d.off))
		return nil
	}
	p := d.b[d.off : d.off+n]
	d.off += n
	return p
}

func (d *decoder) byte() byte {
	if p := d.take(1); p != nil {
		return p[0]
	}
	return 0
}

func (d *decoder) u64() uint64 {
	if p := d.take(8); p != nil {
		return binary.BigEndian.Uint64(p)
	}
	return 0
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 || n != len(binary.AppendUvarint(nil, v)) {
		// Only the shortest encoding is accepted, so that one value
		// has one encoding.
		d.fail("bad varint")
		return 0
	}
	d.off += n
	return v
}

// length reads a length prefix and checks it against limit and against
// the bytes left.
func (d *decoder) length(limit int) int {
	v := d.uvarint()
	if d.err != nil {
		return 0
	}
	if v > uint64(limit) {
		d.fail(fmt.Sprintf("length %d exceeds limit %d", v, limit))
		return 0
	}
	if v > uint64(len(d.b)-d.off) {
		d.fail(fmt.Sprintf("length %d exceeds the %d bytes left", v, len(d.b)-d.off))
		return 0
	}
	return int(v)
}

func (d *decoder) string(limit int) string { return string(d.take(d.length(limit))) }

func (d *decoder) bytes(limit int) []byte {
	p := d.take(d.length(limit))
	if len(p) == 0 {
		return nil
	}
	return append([]byte(nil), p...)
}

// count reads an item count and checks that the remaining bytes could
// hold that many items of at least minSize bytes each.
func (d *decoder) count(minSize int) int {
	v := d.uvarint()
	if d.err != nil {
		return 0
	}
	if v > uint64((len(d.b)-d.off)/minSize) {
		d.fail(fmt.Sprintf("count %d cannot fit in the %d bytes left", v, len(d.b)-d.off))
		return 0
	}
	return int(v)
}

func (d *decoder) finish(what string) error {
	if d.err == nil && d.off != len(d.b) {
		d.fail(fmt.Sprintf("%d trailing bytes", len(d.b)-d.off))
	}
	if d.err != nil {
		return fmt.Errorf("raftlease: decode %s: %w", what, d.err)
	}
	return nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)
