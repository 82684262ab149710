package raftlease

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"math/bits"
	"slices"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/storage"
)

// fsm is the replicated state machine. Every member applies the same
// committed entries in the same order, and apply is a pure function of the
// state and the entry, so every member holds the same state at the same
// index. It is only touched by the group's run loop.
type fsm struct {
	kv   map[string]storage.Item
	high fence.Token // the highest token a write was applied with

	// candidates are the members that want the lease; the leader hands
	// Raft leadership to one of them if it does not want it itself.
	candidates map[uint64]bool
	// holder is the last lease grant: member led Raft term term and
	// announced it holds the lease in it.
	holder holderRecord
	// members maps the Raft ID of every member added through the log to
	// its name and address.
	members map[uint64]memberInfo
	// bytes is the size of the keys and values stored, which the
	// snapshot policy weighs the log against.
	bytes int
	// logged are the members known to hold a log: a leader saw them
	// acknowledge an entry. A member that starts with an empty data
	// directory while it is in this set lost a log the group counted on,
	// and must be removed and added again (see replace.go). Removing a
	// member takes it out.
	logged map[uint64]bool
}

// holderRecord is a lease grant: member led Raft term term, and
// advertises its API at addr (Config.APIAddr; "" for none).
type holderRecord struct {
	member, term uint64
	addr         string
}

func newFSM() *fsm {
	return &fsm{kv: map[string]storage.Item{}, candidates: map[uint64]bool{}, members: map[uint64]memberInfo{}, logged: map[uint64]bool{}}
}

// result is what applying one command gives its proposer.
type result struct {
	version storage.Version
	err     error
}

// apply applies c, the entry at index, and returns its result. The fence
// rule is the same on every member: a write is applied only if its token
// is at least the highest token applied before it; a compare-and-swap is
// checked against the version stored at this point of the log.
func (s *fsm) apply(index uint64, c command) result {
	switch c.kind {
	case opPut, opCAS, opDelete:
		if c.token == 0 {
			return result{err: fence.ErrNoToken}
		}
		if c.token < s.high {
			return result{err: fmt.Errorf("raftlease: %s %q: %w", c.kind, c.key, fence.Stale(c.token, s.high))}
		}
		cur, exists := s.kv[c.key]
		if c.kind == opCAS && cur.Version != c.old {
			return result{err: fmt.Errorf("raftlease: compare-and-swap %q: %w: stored version %d, expected %d", c.key, storage.ErrConflict, cur.Version, c.old)}
		}
		s.high = c.token
		if exists {
			s.bytes -= len(c.key) + len(cur.Value)
		}
		if c.kind == opDelete {
			if exists {
				delete(s.kv, c.key)
			}
			return result{}
		}
		v := storage.Version(index)
		s.kv[c.key] = storage.Item{Value: c.value, Version: v}
		s.bytes += len(c.key) + len(c.value)
		return result{version: v}
	case opCandidate:
		if c.on {
			s.candidates[c.member] = true
		} else {
			delete(s.candidates, c.member)
		}
	case opHolder:
		if c.term > s.holder.term {
			s.holder = holderRecord{member: c.member, term: c.term, addr: c.addr}
		}
	case opLogged:
		s.logged[c.member] = true
	}
	return result{}
}

func (s *fsm) get(key string) (storage.Item, error) {
	it, ok := s.kv[key]
	if !ok {
		return storage.Item{}, fmt.Errorf("raftlease: get %q: %w", key, storage.ErrNotFound)
	}
	return storage.Item{Value: bytes.Clone(it.Value), Version: it.Version}, nil
}

// Snapshot format, version 2, all integers big endian:
//
//	"HKRS" | format u8 | high u64 | holder member u64 | holder term u64 |
//	holder address string |
//	members: uvarint n, n x (raft ID u64, ID string, address string) |
//	candidates: uvarint n, n x raft ID u64 |
//	logged: uvarint n, n x raft ID u64 |
//	entries: uvarint n, n x (key string, version u64, value bytes) |
//	CRC-32C of everything before it, u32
//
// Version 1, which decodes too, has neither the holder address nor the
// logged set. Strings and bytes are uvarint length + data. Members,
// candidates and logged are sorted by Raft ID and entries by key, so equal
// states encode to equal bytes on every member.
const (
	snapshotMagic  = "HKRS"
	snapshotFormat = 2
)

// encode returns the snapshot encoding of s.
func (s *fsm) encode() []byte {
	size, write := s.snapshot()
	b := bytes.NewBuffer(make([]byte, 0, size))
	_ = write(b) // a bytes.Buffer does not fail
	return b.Bytes()
}

// snapshot returns the size of s's snapshot encoding and a function that
// writes it, streaming the entries through a small buffer so that the
// encoding is never held whole: a snapshot costs the sorted keys and 64
// KiB, not a second copy of the store. s must not change until write
// returns (the run loop calls both).
func (s *fsm) snapshot() (int, func(io.Writer) error) {
	head := append([]byte(snapshotMagic), snapshotFormat)
	head = binary.BigEndian.AppendUint64(head, uint64(s.high))
	head = binary.BigEndian.AppendUint64(head, s.holder.member)
	head = binary.BigEndian.AppendUint64(head, s.holder.term)
	head = appendString(head, s.holder.addr)
	ids := slices.Sorted(maps.Keys(s.members))
	head = binary.AppendUvarint(head, uint64(len(ids)))
	for _, id := range ids {
		head = binary.BigEndian.AppendUint64(head, id)
		head = appendString(head, s.members[id].ID)
		head = appendString(head, s.members[id].Addr)
	}
	head = appendIDSet(head, s.candidates)
	head = appendIDSet(head, s.logged)

	keys := slices.Sorted(maps.Keys(s.kv))
	head = binary.AppendUvarint(head, uint64(len(keys)))
	size := len(head) + 4
	for _, k := range keys {
		v := s.kv[k].Value
		size += uvarintLen(len(k)) + len(k) + 8 + uvarintLen(len(v)) + len(v)
	}
	return size, func(w io.Writer) error {
		crc := crc32.Update(0, castagnoli, head)
		buf := append(make([]byte, 0, 64<<10), head...)
		flush := func() error {
			_, err := w.Write(buf)
			buf = buf[:0]
			return err
		}
		for _, k := range keys {
			it := s.kv[k]
			start := len(buf)
			buf = appendString(buf, k)
			buf = binary.BigEndian.AppendUint64(buf, uint64(it.Version))
			buf = appendBytes(buf, it.Value)
			crc = crc32.Update(crc, castagnoli, buf[start:])
			if len(buf) >= 60<<10 {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		buf = binary.BigEndian.AppendUint32(buf, crc)
		return flush()
	}
}

// uvarintLen is the length of n's uvarint encoding.
func uvarintLen(n int) int { return (bits.Len64(uint64(n)|1) + 6) / 7 }

// decodeFSM reads a snapshot written by encode. It checks the checksum
// before parsing and refuses anything else: a snapshot that cannot be
// read is an error, never an empty store.
func decodeFSM(data []byte) (*fsm, error) {
	const minLen = len(snapshotMagic) + 1 + 3*8 + 3 + 4
	if len(data) < minLen {
		return nil, fmt.Errorf("raftlease: decode snapshot: %w: %d bytes is shorter than the minimum %d", ErrCorrupt, len(data), minLen)
	}
	body, sum := data[:len(data)-4], binary.BigEndian.Uint32(data[len(data)-4:])
	if got := crc32.Checksum(body, castagnoli); got != sum {
		return nil, fmt.Errorf("raftlease: decode snapshot: %w: checksum %08x, stored %08x", ErrCorrupt, got, sum)
	}
	if string(body[:4]) != snapshotMagic {
		return nil, fmt.Errorf("raftlease: decode snapshot: %w: bad magic %q", ErrCorrupt, body[:4])
	}
	d := decoder{b: body, off: 4}
	f := d.byte()
	if f != 1 && f != snapshotFormat {
		return nil, fmt.Errorf("raftlease: decode snapshot: %w: format %d, want 1 or %d", ErrCorrupt, f, snapshotFormat)
	}
	s := newFSM()
	s.high = fence.Token(d.u64())
	s.holder.member = d.u64()
	s.holder.term = d.u64()
	if f >= 2 {
		s.holder.addr = d.string(maxAddrLen)
	}
	var prev uint64
	for i, n := 0, d.count(10); i < n && d.err == nil; i++ {
		id := d.u64()
		m := memberInfo{ID: d.string(maxMemberIDLen), Addr: d.string(maxAddrLen)}
		if d.err == nil && (id <= prev || m.ID == "") {
			d.fail("members not sorted, duplicated or unnamed")
		}
		s.members[id], prev = m, id
	}
	d.idSet(s.candidates, "candidates")
	if f >= 2 {
		d.idSet(s.logged, "logged members")
	}
	var prevKey string
	for i, n := 0, d.count(10); i < n && d.err == nil; i++ {
		k := d.string(storage.MaxKeyLen)
		v := storage.Version(d.u64())
		val := d.bytes(maxValueLimit)
		if d.err == nil && ((i > 0 && k <= prevKey) || v == 0 || storage.ValidateKey(k) != nil) {
			d.fail(fmt.Sprintf("entry %q out of order, invalid or with version 0", k))
		}
		s.kv[k], prevKey = storage.Item{Value: val, Version: v}, k
		s.bytes += len(k) + len(val)
	}
	if err := d.finish("snapshot"); err != nil {
		return nil, err
	}
	return s, nil
}

// appendIDSet appends the members of set, sorted.
func appendIDSet(b []byte, set map[uint64]bool) []byte {
	ids := make([]uint64, 0, len(set))
	for id := range set {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	b = binary.AppendUvarint(b, uint64(len(ids)))
	for _, id := range ids {
		b = binary.BigEndian.AppendUint64(b, id)
	}
	return b
}

// idSet reads a set written by appendIDSet into set.
func (d *decoder) idSet(set map[uint64]bool, what string) {
	var prev uint64
	for i, n := 0, d.count(8); i < n && d.err == nil; i++ {
		id := d.u64()
		if d.err == nil && id <= prev {
			d.fail(what + " not sorted or duplicated")
		}
		set[id], prev = true, id
	}
}
