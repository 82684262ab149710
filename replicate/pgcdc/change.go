package pgcdc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// ErrCorruptChange is wrapped by the error for record data that is not a
// change this package encoded.
var ErrCorruptChange = errors.New("pgcdc: corrupt change record")

// Op is what a change does.
type Op byte

// The operations. OpProgress carries no row: it only moves the position
// past WAL that held nothing for the publication, so that a sink that
// stores it lets the slot release that WAL.
const (
	OpInsert   Op = 'I'
	OpUpdate   Op = 'U'
	OpDelete   Op = 'D'
	OpTruncate Op = 'T'
	OpProgress Op = 'P'
)

// String names the operation ("insert", ...).
func (o Op) String() string {
	switch o {
	case OpInsert:
		return "insert"
	case OpUpdate:
		return "update"
	case OpDelete:
		return "delete"
	case OpTruncate:
		return "truncate"
	case OpProgress:
		return "progress"
	}
	return fmt.Sprintf("op(%d)", byte(o))
}

// Column describes one column of the changed table as the source sent it.
type Column struct {
	Name    string
	Type    uint32 // the type's OID (a built-in type: the source refuses others)
	TypeMod int32  // the type modifier (-1: none), e.g. varchar(n) or numeric(p,s)
	Key     bool   // part of the replica identity (the primary key by default)
}

// ValueKind says what a Value holds.
type ValueKind byte

// The kinds of value, as pgoutput sends them.
const (
	ValueNull      ValueKind = 'n' // SQL NULL
	ValueUnchanged ValueKind = 'u' // a TOASTed value the update did not change, not sent: keep the target's
	ValueText      ValueKind = 't' // the value in PostgreSQL's text form, in Text
)

// Value is one column's value.
type Value struct {
	Kind ValueKind
	// Text is the value in PostgreSQL's text output form, exactly as the
	// source printed it (lossless for every type). It aliases the
	// record's data: copy it to keep it past the record.
	Text []byte
}

// Decode returns the value as a Go value of col's type through pgtype's
// default mapping: nil for NULL; int16, int32, int64 for int2, int4,
// int8; float32, float64; bool; string for text, varchar, bpchar, name
// and other string types; []byte for bytea; time.Time for timestamp,
// timestamptz and date; pgtype.Numeric for numeric; pgtype.Interval,
// pgtype.Time; [16]byte for uuid; map[string]any or []any (decoded
// JSON) for json and jsonb; netip.Prefix for inet and cidr; []T for
// arrays. An unchanged TOASTed value has no value and is an error
// matching ErrUnchanged. m may be nil for a fresh pgtype.Map.
func (v Value) Decode(m *pgtype.Map, col Column) (any, error) {
	switch v.Kind {
	case ValueNull:
		return nil, nil
	case ValueUnchanged:
		return nil, fmt.Errorf("%w: column %q", ErrUnchanged, col.Name)
	}
	if m == nil {
		m = pgtype.NewMap()
	}
	t, ok := m.TypeForOID(col.Type)
	if !ok {
		return nil, fmt.Errorf("%w: column %q: type OID %d", ErrUnsupportedType, col.Name, col.Type)
	}
	out, err := t.Codec.DecodeValue(m, col.Type, pgtype.TextFormatCode, v.Text)
	if err != nil {
		return nil, fmt.Errorf("pgcdc: column %q: decode %s value %q: %w", col.Name, t.Name, v.Text, err)
	}
	return out, nil
}

// ErrUnchanged is wrapped by the error Value.Decode returns for a TOASTed
// value that an update left unchanged and the source therefore did not
// send.
var ErrUnchanged = errors.New("pgcdc: unchanged TOASTed value was not sent")

// Change is one decoded change record (see DecodeChange).
type Change struct {
	Op         Op
	XID        uint32    // the source transaction's ID (0 for progress and the initial load)
	CommitLSN  LSN       // the LSN of the transaction's commit record (for progress: the position)
	CommitTime time.Time // when the transaction committed on the source, UTC
	Schema     string
	Table      string
	Columns    []Column // the table's columns, in the source's order
	// New is the new row of an insert or update, one Value per column.
	New []Value
	// Old is the old row of an update or delete: the key columns only
	// (others NULL) unless the table's replica identity is FULL, in which
	// case OldFull is true and every column is there. An update sends it
	// only when its key changed or the identity is FULL; otherwise Old is
	// nil and the key is in New.
	Old     []Value
	OldFull bool
	// Cascade and RestartIdentity are TRUNCATE's options.
	Cascade, RestartIdentity bool
}

// Key returns the values that identify the changed row: the key columns
// of Old if present, else of New.
func (c *Change) Key() []Value {
	row := c.Old
	if row == nil {
		row = c.New
	}
	var k []Value
	for i, col := range c.Columns {
		if col.Key && i < len(row) {
			k = append(k, row[i])
		}
	}
	return k
}

// Encoding of a change record, format 1, integers big-endian:
//
//	format[1]=1 op[1] xid[4] commitLSN[8] commitTimeMicros[8]
//	then, except for progress:
//	schemaLen[2] schema tableLen[2] table ncols[2]
//	  per column: nameLen[2] name typeOID[4] typmod[4] flags[1] (1: key)
//	then by op:
//	  truncate: options[1] (1: cascade, 2: restart identity)
//	  insert, update, delete: old[1] (0: none, 'K': key, 'O': full) [tuple] new[1] (0 or 'N') [tuple]
//	tuple: per column kind[1] ('n', 'u', 't') and for 't' len[4] text
//
// The tuple layout is pgoutput's own, so the source copies it.
const changeFormat = 1

const changeHeaderLen = 1 + 1 + 4 + 8 + 8

// appendChangeHeader appends the fixed header of a change.
func appendChangeHeader(b []byte, op Op, xid uint32, commitLSN LSN, commitTime time.Time) []byte {
	b = append(b, changeFormat, byte(op))
	b = binary.BigEndian.AppendUint32(b, xid)
	b = binary.BigEndian.AppendUint64(b, uint64(commitLSN))
	return binary.BigEndian.AppendUint64(b, uint64(commitTime.UnixMicro()))
}

// appendRelation appends the relation part of a change.
func appendRelation(b []byte, schema, table string, cols []Column) []byte {
	b = appendStr16(b, schema)
	b = appendStr16(b, table)
	b = binary.BigEndian.AppendUint16(b, uint16(len(cols)))
	for _, c := range cols {
		b = appendStr16(b, c.Name)
		b = binary.BigEndian.AppendUint32(b, c.Type)
		b = binary.BigEndian.AppendUint32(b, uint32(c.TypeMod))
		var f byte
		if c.Key {
			f = 1
		}
		b = append(b, f)
	}
	return b
}

func appendStr16(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// appendTuple appends a row of values in the tuple layout.
func appendTuple(b []byte, row []Value) []byte {
	for _, v := range row {
		b = append(b, byte(v.Kind))
		if v.Kind == ValueText {
			b = binary.BigEndian.AppendUint32(b, uint32(len(v.Text)))
			b = append(b, v.Text...)
		}
	}
	return b
}

// EncodeChange returns the record data of c, as the source writes it. It
// is for tests and for programs that feed a sink of this package's
// records from elsewhere. Values of kind ValueText carry their Text;
// others none.
func EncodeChange(c *Change) []byte {
	b := appendChangeHeader(nil, c.Op, c.XID, c.CommitLSN, c.CommitTime)
	if c.Op == OpProgress {
		return b
	}
	b = appendRelation(b, c.Schema, c.Table, c.Columns)
	switch c.Op {
	case OpTruncate:
		var o byte
		if c.Cascade {
			o |= 1
		}
		if c.RestartIdentity {
			o |= 2
		}
		return append(b, o)
	}
	switch {
	case c.Old == nil:
		b = append(b, 0)
	case c.OldFull:
		b = appendTuple(append(b, 'O'), c.Old)
	default:
		b = appendTuple(append(b, 'K'), c.Old)
	}
	if c.New == nil {
		return append(b, 0)
	}
	return appendTuple(append(b, 'N'), c.New)
}

// DecodeChange decodes one record's data. The Change's Values alias data.
// Damaged data gives an error wrapping ErrCorruptChange that names the
// offset; it never panics. A Decoder decodes many records faster.
func DecodeChange(data []byte) (*Change, error) {
	var d Decoder
	return d.Decode(data)
}

// Decoder decodes change records, reusing the decoded column list of a
// table across records: the Columns of the Changes it returns are shared
// and must not be modified. The zero Decoder is ready; it is not safe for
// concurrent use. Its cache is bounded.
type Decoder struct {
	rels map[string]*decodedRel
}

type decodedRel struct {
	schema, table string
	cols          []Column
}

// maxCachedRelations bounds a Decoder's cache; past it the cache starts
// over.
const maxCachedRelations = 4096

// Decode decodes one record's data, as DecodeChange.
func (d *Decoder) Decode(data []byte) (*Change, error) {
	r := reader{b: data}
	if len(data) < changeHeaderLen {
		return nil, r.fail("%d bytes, shorter than a change header", len(data))
	}
	if data[0] != changeFormat {
		return nil, r.fail("format %d, this code reads %d", data[0], changeFormat)
	}
	c := &Change{Op: Op(data[1])}
	c.XID = binary.BigEndian.Uint32(data[2:])
	c.CommitLSN = LSN(binary.BigEndian.Uint64(data[6:]))
	c.CommitTime = time.UnixMicro(int64(binary.BigEndian.Uint64(data[14:]))).UTC()
	r.off = changeHeaderLen
	switch c.Op {
	case OpProgress:
		return c, r.end()
	case OpInsert, OpUpdate, OpDelete, OpTruncate:
	default:
		return nil, r.failAt(1, "unknown operation %q", data[1])
	}
	if err := d.relation(&r, c); err != nil {
		return nil, err
	}
	if c.Op == OpTruncate {
		o, err := r.byte()
		if err != nil {
			return nil, err
		}
		if o&^3 != 0 {
			return nil, r.failAt(r.off-1, "unknown truncate options %#x", o)
		}
		c.Cascade, c.RestartIdentity = o&1 != 0, o&2 != 0
		return c, r.end()
	}
	old, err := r.byte()
	if err != nil {
		return nil, err
	}
	switch old {
	case 0:
	case 'K', 'O':
		c.OldFull = old == 'O'
		if c.Old, err = r.tuple(len(c.Columns)); err != nil {
			return nil, err
		}
	default:
		return nil, r.failAt(r.off-1, "unknown old-row kind %q", old)
	}
	nw, err := r.byte()
	if err != nil {
		return nil, err
	}
	switch nw {
	case 0:
	case 'N':
		if c.New, err = r.tuple(len(c.Columns)); err != nil {
			return nil, err
		}
	default:
		return nil, r.failAt(r.off-1, "unknown new-row kind %q", nw)
	}
	switch {
	case c.Op == OpInsert && (c.New == nil || c.Old != nil):
		return nil, r.fail("insert needs a new row and no old one")
	case c.Op == OpUpdate && c.New == nil:
		return nil, r.fail("update without a new row")
	case c.Op == OpDelete && (c.Old == nil || c.New != nil):
		return nil, r.fail("delete needs an old row and no new one")
	}
	return c, r.end()
}

// relation decodes the relation part, through the cache.
func (d *Decoder) relation(r *reader, c *Change) error {
	start := r.off
	schema, err := r.str16()
	if err != nil {
		return err
	}
	table, err := r.str16()
	if err != nil {
		return err
	}
	n, err := r.uint16()
	if err != nil {
		return err
	}
	colStart := r.off
	// Skip over the columns to find the relation's bytes, then look them
	// up; decode them only if they are new.
	for range n {
		l, err := r.uint16()
		if err != nil {
			return err
		}
		if err := r.skip(int(l) + 9); err != nil {
			return err
		}
	}
	key := r.b[start:r.off]
	if rel, ok := d.rels[string(key)]; ok {
		c.Schema, c.Table, c.Columns = rel.schema, rel.table, rel.cols
		return nil
	}
	cols := make([]Column, n)
	cr := reader{b: r.b, off: colStart}
	for i := range cols {
		name, _ := cr.str16()
		typ, _ := cr.uint32()
		mod, _ := cr.uint32()
		f, _ := cr.byte()
		if f&^1 != 0 {
			return cr.failAt(cr.off-1, "column %q: unknown flags %#x", name, f)
		}
		cols[i] = Column{Name: name, Type: typ, TypeMod: int32(mod), Key: f&1 != 0}
	}
	if d.rels == nil || len(d.rels) >= maxCachedRelations {
		d.rels = map[string]*decodedRel{}
	}
	d.rels[string(key)] = &decodedRel{schema: schema, table: table, cols: cols}
	c.Schema, c.Table, c.Columns = schema, table, cols
	return nil
}

// reader reads a change record with bounds checks.
type reader struct {
	b   []byte
	off int
}

func (r *reader) fail(format string, args ...any) error {
	return r.failAt(r.off, format, args...)
}

func (r *reader) failAt(off int, format string, args ...any) error {
	return fmt.Errorf("%w: at byte %d: %s", ErrCorruptChange, off, fmt.Sprintf(format, args...))
}

func (r *reader) need(n int) error {
	if n < 0 || len(r.b)-r.off < n {
		return r.fail("truncated: need %d bytes, %d left", n, len(r.b)-r.off)
	}
	return nil
}

func (r *reader) skip(n int) error {
	if err := r.need(n); err != nil {
		return err
	}
	r.off += n
	return nil
}

func (r *reader) byte() (byte, error) {
	if err := r.need(1); err != nil {
		return 0, err
	}
	r.off++
	return r.b[r.off-1], nil
}

func (r *reader) uint16() (uint16, error) {
	if err := r.need(2); err != nil {
		return 0, err
	}
	r.off += 2
	return binary.BigEndian.Uint16(r.b[r.off-2:]), nil
}

func (r *reader) uint32() (uint32, error) {
	if err := r.need(4); err != nil {
		return 0, err
	}
	r.off += 4
	return binary.BigEndian.Uint32(r.b[r.off-4:]), nil
}

func (r *reader) str16() (string, error) {
	n, err := r.uint16()
	if err != nil {
		return "", err
	}
	if err := r.need(int(n)); err != nil {
		return "", err
	}
	r.off += int(n)
	return string(r.b[r.off-int(n) : r.off]), nil
}

// tuple reads n values in the tuple layout.
func (r *reader) tuple(n int) ([]Value, error) {
	row := make([]Value, n)
	for i := range row {
		k, err := r.byte()
		if err != nil {
			return nil, err
		}
		switch ValueKind(k) {
		case ValueNull, ValueUnchanged:
			row[i].Kind = ValueKind(k)
		case ValueText:
			l, err := r.uint32()
			if err != nil {
				return nil, err
			}
			if err := r.need(int(l)); err != nil {
				return nil, err
			}
			row[i] = Value{Kind: ValueText, Text: r.b[r.off : r.off+int(l) : r.off+int(l)]}
			r.off += int(l)
		default:
			return nil, r.failAt(r.off-1, "column %d: unknown value kind %q", i, k)
		}
	}
	return row, nil
}

func (r *reader) end() error {
	if r.off != len(r.b) {
		return r.fail("%d trailing bytes", len(r.b)-r.off)
	}
	return nil
}
