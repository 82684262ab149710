package pgcdc

import (
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/hakit/hakit/replicate"
)

// ErrProtocol is wrapped by the error for a pgoutput message that cannot
// be decoded, or that breaks the protocol's order (a change outside a
// transaction, a relation not announced, a commit that does not match its
// begin). The error names the message type and the offset.
var ErrProtocol = errors.New("pgcdc: pgoutput protocol error")

// ErrUnsupportedType is wrapped by the error for a published column whose
// type is not built into PostgreSQL (an enum, a domain, a composite or an
// extension's type): the error names the table, the column and the type.
var ErrUnsupportedType = errors.New("pgcdc: unsupported column type")

// ErrTransactionTooLarge is wrapped by the error for a source transaction
// bigger than Config.MaxTransactionBytes: it would have to be held in
// memory whole.
var ErrTransactionTooLarge = errors.New("pgcdc: transaction too large")

// maxRelations bounds the relations (and the types) one session may
// announce, and maxAnnouncedBytes the memory their descriptions take: a
// relation message is bounded only by the message bound, and a peer that
// announces many large ones must not grow the decoder without end.
const (
	maxRelations      = 1 << 16
	maxAnnouncedBytes = 64 << 20
)

// pgEpoch is PostgreSQL's epoch for timestamps on the wire.
var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

func pgTime(micros int64) time.Time { return pgEpoch.Add(time.Duration(micros) * time.Microsecond) }

// relation is a table as announced by a Relation message.
type relation struct {
	schema, table string
	name          string // schema.table
	cols          []Column
	header        []byte // appendRelation's bytes, copied into every change
}

// size is about what the relation holds in memory: its header and the
// strings of its names and columns.
func (r *relation) size() int {
	return 2*len(r.header) + len(r.name)
}

// txn is a transaction being received, or complete.
type txn struct {
	xid        uint32
	finalLSN   LSN // the commit record's LSN, announced by BEGIN
	endLSN     LSN // the end of the commit record, from COMMIT
	commitTime time.Time
	recs       []replicate.Record
	tables     []string // the qualified table of each record
	bytes      int
}

// decoder turns pgoutput messages (protocol version 1) into transactions
// of change records. It checks every length against what is there and
// the order of the messages, so bytes from the network can make it fail
// but never panic or allocate more than they are long (plus
// MaxTransactionBytes for a transaction being assembled).
type decoder struct {
	rels       map[uint32]*relation
	types      map[uint32]string // names of non-built-in types, from Type messages
	announced  int               // bytes held by rels and types
	typeMap    *pgtype.Map
	maxTxBytes int
	tx         *txn
}

// announce accounts for a description of size bytes replacing one of old
// bytes, failing past maxAnnouncedBytes.
func (d *decoder) announce(m *wreader, old, size int) error {
	if d.announced-old+size > maxAnnouncedBytes {
		return m.fail("the relations and types announced take more than %d bytes", maxAnnouncedBytes)
	}
	d.announced += size - old
	return nil
}

func newDecoder(maxTxBytes int) *decoder {
	return &decoder{rels: map[uint32]*relation{}, types: map[uint32]string{}, typeMap: pgtype.NewMap(), maxTxBytes: maxTxBytes}
}

// inTx reports whether a transaction is open (BEGIN seen, COMMIT not).
func (d *decoder) inTx() bool { return d.tx != nil }

// decode handles one message. It returns the transaction a COMMIT
// completed, if any.
func (d *decoder) decode(msg []byte) (*txn, error) {
	if len(msg) == 0 {
		return nil, fmt.Errorf("%w: empty message", ErrProtocol)
	}
	m := wreader{b: msg, off: 1, typ: msg[0]}
	switch msg[0] {
	case 'B':
		return nil, d.begin(&m)
	case 'C':
		return d.commit(&m)
	case 'O': // origin: informational
		return nil, d.needTx(&m)
	case 'R':
		return nil, d.relation(&m)
	case 'Y':
		return nil, d.typ(&m)
	case 'I', 'U', 'D':
		return nil, d.change(&m)
	case 'T':
		return nil, d.truncate(&m)
	case 'M': // a logical decoding message: not requested, nothing to apply
		return nil, nil
	case 'S', 'E', 'c', 'A':
		return nil, m.fail("streamed in-progress transactions are not supported (the source does not ask for them)")
	}
	return nil, m.fail("unknown message type")
}

func (d *decoder) needTx(m *wreader) error {
	if d.tx == nil {
		return m.fail("outside a transaction")
	}
	return nil
}

func (d *decoder) begin(m *wreader) error {
	if d.tx != nil {
		return m.fail("BEGIN inside transaction %d", d.tx.xid)
	}
	lsn, err := m.uint64()
	if err != nil {
		return err
	}
	ts, err := m.uint64()
	if err != nil {
		return err
	}
	xid, err := m.uint32()
	if err != nil {
		return err
	}
	d.tx = &txn{xid: xid, finalLSN: LSN(lsn), commitTime: pgTime(int64(ts))}
	return m.end()
}

func (d *decoder) commit(m *wreader) (*txn, error) {
	if err := d.needTx(m); err != nil {
		return nil, err
	}
	if _, err := m.byte(); err != nil { // flags, unused
		return nil, err
	}
	commitLSN, err := m.uint64()
	if err != nil {
		return nil, err
	}
	endLSN, err := m.uint64()
	if err != nil {
		return nil, err
	}
	ts, err := m.uint64()
	if err != nil {
		return nil, err
	}
	if err := m.end(); err != nil {
		return nil, err
	}
	tx := d.tx
	if LSN(commitLSN) != tx.finalLSN {
		return nil, m.fail("commit LSN %s of transaction %d, BEGIN announced %s", LSN(commitLSN), tx.xid, tx.finalLSN)
	}
	if endLSN <= commitLSN {
		return nil, m.fail("transaction %d ends at %s, not after its commit at %s", tx.xid, LSN(endLSN), LSN(commitLSN))
	}
	d.tx = nil
	tx.endLSN = LSN(endLSN)
	tx.commitTime = pgTime(int64(ts))
	setPositions(tx.recs, tx.endLSN, nil)
	return tx, nil
}

func (d *decoder) relation(m *wreader) error {
	id, err := m.uint32()
	if err != nil {
		return err
	}
	schema, err := m.cstring()
	if err != nil {
		return err
	}
	if schema == "" {
		schema = "pg_catalog"
	}
	table, err := m.cstring()
	if err != nil {
		return err
	}
	if _, err := m.byte(); err != nil { // replica identity setting
		return err
	}
	n, err := m.uint16()
	if err != nil {
		return err
	}
	cols := make([]Column, 0, min(int(n), len(m.b)))
	for range n {
		flags, err := m.byte()
		if err != nil {
			return err
		}
		name, err := m.cstring()
		if err != nil {
			return err
		}
		typ, err := m.uint32()
		if err != nil {
			return err
		}
		mod, err := m.uint32()
		if err != nil {
			return err
		}
		cols = append(cols, Column{Name: name, Type: typ, TypeMod: int32(mod), Key: flags&1 != 0})
	}
	if err := m.end(); err != nil {
		return err
	}
	for _, c := range cols {
		if _, ok := d.typeMap.TypeForOID(c.Type); !ok {
			name := d.types[c.Type]
			if name == "" {
				name = "unknown"
			}
			return fmt.Errorf("%w: table %s.%s column %q has type %s (OID %d); only types built into PostgreSQL are replicated",
				ErrUnsupportedType, schema, table, c.Name, name, c.Type)
		}
	}
	prev, ok := d.rels[id]
	if !ok && len(d.rels) >= maxRelations {
		return m.fail("more than %d relations announced", maxRelations)
	}
	rel := &relation{schema: schema, table: table, name: schema + "." + table, cols: cols, header: appendRelation(nil, schema, table, cols)}
	old := 0
	if ok {
		old = prev.size()
	}
	if err := d.announce(m, old, rel.size()); err != nil {
		return err
	}
	d.rels[id] = rel
	return nil
}

func (d *decoder) typ(m *wreader) error {
	oid, err := m.uint32()
	if err != nil {
		return err
	}
	ns, err := m.cstring()
	if err != nil {
		return err
	}
	name, err := m.cstring()
	if err != nil {
		return err
	}
	if err := m.end(); err != nil {
		return err
	}
	prev, ok := d.types[oid]
	if !ok && len(d.types) >= maxRelations {
		return m.fail("more than %d types announced", maxRelations)
	}
	if err := d.announce(m, len(prev), len(ns)+1+len(name)); err != nil {
		return err
	}
	d.types[oid] = ns + "." + name
	return nil
}

// change handles Insert, Update and Delete: the record is the relation's
// header followed by pgoutput's tuples, checked and copied.
func (d *decoder) change(m *wreader) error {
	if err := d.needTx(m); err != nil {
		return err
	}
	id, err := m.uint32()
	if err != nil {
		return err
	}
	rel, ok := d.rels[id]
	if !ok {
		return m.fail("change of relation %d that was not announced", id)
	}
	kind, err := m.byte()
	if err != nil {
		return err
	}
	op := Op(m.typ)
	var oldKind byte
	var oldStart, oldEnd int
	if kind == 'K' || kind == 'O' {
		if op == OpInsert {
			return m.fail("insert with an old row")
		}
		oldKind = kind
		if oldStart, err = m.tuple(len(rel.cols)); err != nil {
			return err
		}
		oldEnd = m.off
		if op == OpUpdate {
			if kind, err = m.byte(); err != nil {
				return err
			}
		}
	} else if op == OpDelete {
		return m.fail("delete without an old row (tuple kind %q)", kind)
	}
	var newStart, newEnd int
	if op != OpDelete {
		if kind != 'N' {
			return m.fail("tuple kind %q where the new row belongs", kind)
		}
		if newStart, err = m.tuple(len(rel.cols)); err != nil {
			return err
		}
		newEnd = m.off
	}
	if err := m.end(); err != nil {
		return err
	}
	size := changeHeaderLen + len(rel.header) + 2 + (oldEnd - oldStart) + (newEnd - newStart)
	b := make([]byte, 0, size)
	b = appendChangeHeader(b, op, d.tx.xid, d.tx.finalLSN, d.tx.commitTime)
	b = append(b, rel.header...)
	b = append(b, oldKind)
	b = append(b, m.b[oldStart:oldEnd]...)
	if op == OpDelete {
		b = append(b, 0)
	} else {
		b = append(b, 'N')
		b = append(b, m.b[newStart:newEnd]...)
	}
	return d.add(b, rel)
}

func (d *decoder) truncate(m *wreader) error {
	if err := d.needTx(m); err != nil {
		return err
	}
	n, err := m.uint32()
	if err != nil {
		return err
	}
	opts, err := m.byte()
	if err != nil {
		return err
	}
	if err := m.need(4 * int(n)); err != nil {
		return err
	}
	for range n {
		id, _ := m.uint32()
		rel, ok := d.rels[id]
		if !ok {
			return m.fail("truncate of relation %d that was not announced", id)
		}
		b := appendChangeHeader(nil, OpTruncate, d.tx.xid, d.tx.finalLSN, d.tx.commitTime)
		b = append(b, rel.header...)
		if err := d.add(append(b, opts&3), rel); err != nil {
			return err
		}
	}
	return m.end()
}

func (d *decoder) add(data []byte, rel *relation) error {
	tx := d.tx
	tx.bytes += len(data) + posLen
	if d.maxTxBytes > 0 && tx.bytes > d.maxTxBytes {
		return fmt.Errorf("%w: transaction %d (commit at %s) exceeds %d bytes after %d changes; raise MaxTransactionBytes",
			ErrTransactionTooLarge, tx.xid, tx.finalLSN, d.maxTxBytes, len(tx.recs))
	}
	tx.recs = append(tx.recs, replicate.Record{Data: data})
	tx.tables = append(tx.tables, rel.name)
	return nil
}
