package pgsink

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/hakit/hakit/replicate/pgcdc"
)

// addChanges queues the statements of the row changes, in order, and
// returns what to check of each result.
func (ss *session) addChanges(ctx context.Context, c *pgx.Conn, b *pgconn.Batch, changes []*pgcdc.Change) ([]op, error) {
	var ops []op
	for i := 0; i < len(changes); {
		ch := changes[i]
		if ch.Op == pgcdc.OpProgress {
			i++
			continue
		}
		tbl, err := ss.table(ctx, c, ch)
		if err != nil {
			return nil, err
		}
		switch ch.Op {
		case pgcdc.OpInsert:
			n := ss.insertRun(changes[i:], tbl)
			if err := ss.addInsert(ctx, c, b, tbl, changes[i:i+n]); err != nil {
				return nil, err
			}
			ops = append(ops, op{change: ch, tbl: tbl})
			i += n
			continue
		case pgcdc.OpUpdate:
			err = ss.addUpdate(ctx, c, b, tbl, ch)
		case pgcdc.OpDelete:
			if n := ss.deleteRun(changes[i:], tbl); n > 1 {
				if err := ss.addDeletes(ctx, c, b, tbl, changes[i:i+n]); err != nil {
					return nil, err
				}
				ops = append(ops, op{change: ch, tbl: tbl, want: int64(n), rows: changes[i : i+n]})
				i += n
				continue
			}
			err = ss.addDelete(ctx, c, b, tbl, ch)
		case pgcdc.OpTruncate:
			n, desc, err := ss.addTruncate(ctx, c, b, tbl, changes[i:])
			if err != nil {
				return nil, err
			}
			ops = append(ops, op{change: ch, tbl: tbl, desc: desc})
			i += n
			continue
		}
		if err != nil {
			return nil, err
		}
		o := op{change: ch, tbl: tbl}
		if ch.Op == pgcdc.OpUpdate || ch.Op == pgcdc.OpDelete {
			o.want = 1
		}
		ops = append(ops, o)
		i++
	}
	return ops, nil
}

// addTruncate truncates, in one statement, the tables of the consecutive
// truncates with the same options at the start of changes, and returns
// how many it took and the tables' names for errors. The source sends one truncate per table of a
// TRUNCATE statement, and tables that reference each other by a foreign
// key can only be truncated together; truncates that follow one another
// in a batch commute, so taking them together changes nothing else.
func (ss *session) addTruncate(ctx context.Context, c *pgx.Conn, b *pgconn.Batch, first *table, changes []*pgcdc.Change) (int, string, error) {
	opt := changes[0]
	names, descs := []string{first.name}, []string{first.desc}
	n := 1
	for ; n < len(changes); n++ {
		ch := changes[n]
		if ch.Op != pgcdc.OpTruncate || ch.Cascade != opt.Cascade || ch.RestartIdentity != opt.RestartIdentity {
			break
		}
		tbl, err := ss.table(ctx, c, ch)
		if err != nil {
			return 0, "", err
		}
		names, descs = append(names, tbl.name), append(descs, tbl.desc)
	}
	q := `TRUNCATE ` + strings.Join(names, ", ")
	if opt.Cascade {
		q += ` CASCADE`
	}
	if opt.RestartIdentity {
		q += ` RESTART IDENTITY`
	}
	b.ExecParams(q, nil, nil, nil, nil)
	return n, strings.Join(descs, ", "), nil
}

// insertRun returns how many inserts from the start of changes go into
// one statement: same table, at most MaxRowsPerStatement and 65535
// parameters, no key twice (an upsert may not touch a row twice).
func (ss *session) insertRun(changes []*pgcdc.Change, tbl *table) int {
	maxRows := min(ss.s.cfg.MaxRowsPerStatement, 65535/max(len(tbl.cols), 1))
	first := changes[0]
	seen := map[string]bool{}
	n := 0
	for n < len(changes) && n < maxRows {
		ch := changes[n]
		if ch.Op != pgcdc.OpInsert || len(ch.Columns) == 0 || &ch.Columns[0] != &first.Columns[0] {
			break
		}
		if tbl.upsert {
			var k strings.Builder
			for _, i := range tbl.keys {
				k.WriteString(strconv.Itoa(len(ch.New[i].Text)))
				k.WriteByte(byte(ch.New[i].Kind))
				k.Write(ch.New[i].Text)
			}
			if seen[k.String()] {
				break
			}
			seen[k.String()] = true
		}
		n++
	}
	return max(n, 1)
}

func (ss *session) addInsert(ctx context.Context, c *pgx.Conn, b *pgconn.Batch, tbl *table, rows []*pgcdc.Change) error {
	var q strings.Builder
	q.WriteString(`INSERT INTO ` + tbl.name + ` (` + strings.Join(tbl.qcol, ", ") + `) VALUES `)
	args := make([][]byte, 0, len(rows)*len(tbl.cols))
	p := 0
	for r, ch := range rows {
		if r > 0 {
			q.WriteString(", ")
		}
		q.WriteByte('(')
		for i, v := range ch.New {
			if i > 0 {
				q.WriteString(", ")
			}
			p++
			q.WriteString("$" + strconv.Itoa(p))
			args = append(args, valueArg(v))
		}
		q.WriteByte(')')
	}
	if tbl.upsert {
		q.WriteString(` ON CONFLICT (`)
		for i, k := range tbl.keys {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString(tbl.qcol[k])
		}
		var set []string
		for i, col := range tbl.qcol {
			if !tbl.cols[i].Key {
				set = append(set, col+" = EXCLUDED."+col)
			}
		}
		if len(set) == 0 {
			q.WriteString(`) DO NOTHING`)
		} else {
			q.WriteString(`) DO UPDATE SET ` + strings.Join(set, ", "))
		}
	}
	return ss.queue(ctx, c, b, tbl, q.String(), args)
}

func (ss *session) addUpdate(ctx context.Context, c *pgx.Conn, b *pgconn.Batch, tbl *table, ch *pgcdc.Change) error {
	var q strings.Builder
	q.WriteString(`UPDATE ` + tbl.name + ` SET `)
	var args [][]byte
	for i, v := range ch.New {
		if v.Kind == pgcdc.ValueUnchanged {
			continue
		}
		if len(args) > 0 {
			q.WriteString(", ")
		}
		args = append(args, valueArg(v))
		q.WriteString(tbl.qcol[i] + " = $" + strconv.Itoa(len(args)))
	}
	if len(args) == 0 {
		// Only unchanged TOASTed values: nothing to set, but the row
		// must still be there.
		q.WriteString(tbl.qcol[0] + " = " + tbl.qcol[0])
	}
	args = ss.where(&q, tbl, ch, args)
	return ss.queue(ctx, c, b, tbl, q.String(), args)
}

func (ss *session) addDelete(ctx context.Context, c *pgx.Conn, b *pgconn.Batch, tbl *table, ch *pgcdc.Change) error {
	var q strings.Builder
	q.WriteString(`DELETE FROM ` + tbl.name)
	args := ss.where(&q, tbl, ch, nil)
	return ss.queue(ctx, c, b, tbl, q.String(), args)
}

// where appends the WHERE clause that finds the changed row: its old key,
// or its key in the new row when the key did not change.
//
// With REPLICA IDENTITY FULL the old row is matched on every column, NULLs
// matching, and two rows of the table may be equal: the source changed
// one of them, so the clause picks one (by its physical address, within
// its partition) rather than change every copy.
func (ss *session) where(q *strings.Builder, tbl *table, ch *pgcdc.Change, args [][]byte) [][]byte {
	row := ch.Old
	if row == nil {
		row = ch.New
	}
	if ch.OldFull {
		q.WriteString(" WHERE (tableoid, ctid) = (SELECT tableoid, ctid FROM " + tbl.name)
		defer q.WriteString(" LIMIT 1)")
	}
	q.WriteString(" WHERE ")
	n := 0
	for i, v := range row {
		if !tbl.cols[i].Key || v.Kind == pgcdc.ValueUnchanged {
			continue
		}
		if n > 0 {
			q.WriteString(" AND ")
		}
		n++
		args = append(args, valueArg(v))
		cmp := " = $"
		if ch.OldFull {
			cmp = " IS NOT DISTINCT FROM $"
		}
		q.WriteString(tbl.qcol[i] + cmp + strconv.Itoa(len(args)))
	}
	if n == 0 {
		q.WriteString("false")
	}
	return args
}

// queue prepares q (once per connection) and adds it with args in text
// form.
func (ss *session) queue(ctx context.Context, c *pgx.Conn, b *pgconn.Batch, tbl *table, q string, args [][]byte) error {
	name, err := ss.prepare(ctx, c, q)
	if err != nil {
		return fmt.Errorf("%w: table %s: prepare %q: %w", ErrSchema, tbl.desc, q, err)
	}
	b.ExecPrepared(name, args, nil, nil)
	return nil
}

// valueArg is a value as a text-format parameter (nil: NULL).
func valueArg(v pgcdc.Value) []byte {
	if v.Kind != pgcdc.ValueText {
		return nil
	}
	if v.Text == nil {
		return []byte{}
	}
	return v.Text
}

// table returns the checked table of a change, reading the target's
// columns the first time (per connection) a table's column list is seen.
func (ss *session) table(ctx context.Context, c *pgx.Conn, ch *pgcdc.Change) (*table, error) {
	if len(ch.Columns) == 0 {
		return nil, fmt.Errorf("%w: table %s.%s: change without columns", ErrSchema, ch.Schema, ch.Table)
	}
	if t, ok := ss.tables[&ch.Columns[0]]; ok {
		return t, nil
	}
	t := &table{name: pgx.Identifier{ch.Schema, ch.Table}.Sanitize(), desc: ch.Schema + "." + ch.Table, cols: ch.Columns}
	rows, err := c.Query(ctx, `SELECT a.attname, format_type(a.atttypid, a.atttypmod), c.oid IS NOT NULL
		FROM (SELECT to_regclass($1) AS oid) c LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped`, t.name)
	if err != nil {
		return nil, fmt.Errorf("pgsink: table %s: read the target's columns on %s: %w", t.desc, ss.s.where(), err)
	}
	target := map[string]string{}
	exists := false
	for rows.Next() {
		var name, typ *string
		if err := rows.Scan(&name, &typ, &exists); err != nil {
			rows.Close()
			return nil, err
		}
		if name != nil {
			target[*name] = *typ
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgsink: table %s: read the target's columns: %w", t.desc, err)
	}
	if !exists {
		return nil, fmt.Errorf("%w: table %s does not exist in the target %s", ErrSchema, t.desc, ss.s.where())
	}
	for i, col := range ch.Columns {
		typ, known := ss.types.TypeForOID(col.Type)
		tname := "OID " + strconv.FormatUint(uint64(col.Type), 10)
		if known {
			tname = typ.Name
		}
		if !known {
			return nil, fmt.Errorf("%w: table %s column %q: type %s is not built into PostgreSQL (%w)", ErrSchema, t.desc, col.Name, tname, pgcdc.ErrUnsupportedType)
		}
		if _, ok := target[col.Name]; !ok {
			return nil, fmt.Errorf("%w: table %s column %q (type %s) does not exist in the target", ErrSchema, t.desc, col.Name, tname)
		}
		t.qcol = append(t.qcol, pgx.Identifier{col.Name}.Sanitize())
		if col.Key {
			t.keys = append(t.keys, i)
		}
	}
	if ss.s.cfg.Upsert {
		if t.upsert, err = uniqueKey(ctx, c, t); err != nil {
			return nil, err
		}
	}
	if len(ss.tables) > 4096 {
		ss.tables = map[*pgcdc.Column]*table{}
	}
	ss.tables[&ch.Columns[0]] = t
	return t, nil
}

// uniqueKey reports whether the target has a unique index on exactly the
// change's key columns, which an upsert needs. Under REPLICA IDENTITY FULL
// every column is "key" and there is usually none: inserts are then plain.
func uniqueKey(ctx context.Context, c *pgx.Conn, t *table) (bool, error) {
	if len(t.keys) == 0 {
		return false, nil
	}
	var names []string
	for _, k := range t.keys {
		names = append(names, t.cols[k].Name)
	}
	var ok bool
	err := c.QueryRow(ctx, `SELECT EXISTS (
		SELECT 1 FROM pg_index i WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL
		AND (SELECT array_agg(a.attname::text ORDER BY a.attname) FROM pg_attribute a
		     WHERE a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)) = (SELECT array_agg(n ORDER BY n) FROM unnest($2::text[]) n))`,
		t.name, names).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("pgsink: table %s: read the target's unique indexes: %w", t.desc, err)
	}
	return ok, nil
}

// deleteRun returns how many deletes from the start of changes go into
// one statement: same table, keyed by a (non-FULL) replica identity, at
// most MaxRowsPerStatement and 65535 parameters. Consecutive deletes never
// name one row twice.
func (ss *session) deleteRun(changes []*pgcdc.Change, tbl *table) int {
	if len(tbl.keys) == 0 || changes[0].OldFull {
		return 1
	}
	maxRows := min(ss.s.cfg.MaxRowsPerStatement, 65535/len(tbl.keys))
	first := &changes[0].Columns[0]
	n := 0
	for n < len(changes) && n < maxRows {
		ch := changes[n]
		if ch.Op != pgcdc.OpDelete || ch.OldFull || len(ch.Columns) == 0 || &ch.Columns[0] != first {
			break
		}
		n++
	}
	return max(n, 1)
}

// addDeletes deletes rows by key: DELETE ... WHERE (k1, k2) IN (($1, $2), ...).
func (ss *session) addDeletes(ctx context.Context, c *pgx.Conn, b *pgconn.Batch, tbl *table, rows []*pgcdc.Change) error {
	var q strings.Builder
	q.WriteString(`DELETE FROM ` + tbl.name + ` WHERE (`)
	for i, k := range tbl.keys {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString(tbl.qcol[k])
	}
	q.WriteString(`) IN (`)
	args := make([][]byte, 0, len(rows)*len(tbl.keys))
	for r, ch := range rows {
		if r > 0 {
			q.WriteString(", ")
		}
		q.WriteByte('(')
		for i, k := range tbl.keys {
			if i > 0 {
				q.WriteString(", ")
			}
			args = append(args, valueArg(ch.Old[k]))
			q.WriteString("$" + strconv.Itoa(len(args)))
		}
		q.WriteByte(')')
	}
	q.WriteByte(')')
	return ss.queue(ctx, c, b, tbl, q.String(), args)
}
