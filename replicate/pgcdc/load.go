package pgcdc

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/hakit/hakit/replicate"
)

// ErrLoad is wrapped by the error for an initial load that cannot go on;
// the message says how to start it again.
var ErrLoad = errors.New("pgcdc: initial load cannot continue")

// restartLoad is the procedure an ErrLoad names.
const restartLoad = "to start the load again, stop the stream, drop the slot, empty the target's tables, delete the stream's checkpoint and the sink's position row, and start it with InitialLoad"

// loader copies the published tables under an imported snapshot.
type loader struct {
	conn  *pgx.Conn // in a REPEATABLE READ transaction under the snapshot
	plan  []string  // every published table, sorted
	first int       // the first table to copy
	start LSN       // the main slot's start: load positions carry it
	seq   uint64    // the last row number used
	state loadState
}

func (l *loader) close(ctx context.Context) {
	if l.conn != nil {
		_ = l.conn.Close(ctx)
	}
}

// publishedTables lists the publication's tables, sorted.
func (c *cursor) publishedTables(ctx context.Context) ([]string, error) {
	rows, err := c.admin.Query(ctx, `SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = $1 ORDER BY 1`, c.s.cfg.Publication)
	if err != nil {
		return nil, fmt.Errorf("pgcdc: list the tables of publication %q: %w", c.s.cfg.Publication, err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// startLoad (re)creates the slot exporting a snapshot, to copy every
// table under it before streaming from the slot's start. The stream
// starts at the beginning, so nothing the slot held is in the target: an
// existing slot is dropped.
func (c *cursor) startLoad(ctx context.Context, exists bool) error {
	s := c.s
	if exists {
		if _, err := c.admin.Exec(ctx, `SELECT pg_drop_replication_slot($1)`, s.cfg.Slot); err != nil {
			return fmt.Errorf("pgcdc: drop slot %q to recreate it for the initial load: %w", s.cfg.Slot, err)
		}
		s.cfg.Logger.Info("pgcdc: dropped the slot to recreate it with a snapshot for the initial load", "slot", s.cfg.Slot)
	}
	plan, err := c.publishedTables(ctx)
	if err != nil {
		return err
	}
	start, snap, err := c.exportSnapshot(ctx, s.cfg.Slot, false)
	if err != nil {
		return err
	}
	c.startLSN = start
	l := &loader{plan: plan, start: start, state: loadState{copying: true, plan: planHash(plan), filters: map[string]LSN{}}}
	c.load = l
	return c.importSnapshot(ctx, l, snap)
}

// exportSnapshot creates a slot on the replication connection, exporting
// its snapshot, and returns its consistent point and the snapshot's name.
func (c *cursor) exportSnapshot(ctx context.Context, slot string, temporary bool) (LSN, string, error) {
	res, err := pglogrepl.CreateReplicationSlot(ctx, c.repl, slot, "pgoutput", pglogrepl.CreateReplicationSlotOptions{Temporary: temporary, Mode: pglogrepl.LogicalReplication, SnapshotAction: "EXPORT_SNAPSHOT"})
	if err != nil {
		return 0, "", fmt.Errorf("pgcdc: create slot %q for the initial load on %s: %w", slot, c.s.where(), err)
	}
	lsn, err := pglogrepl.ParseLSN(res.ConsistentPoint)
	if err != nil {
		return 0, "", fmt.Errorf("pgcdc: slot %q: consistent point %q: %w", slot, res.ConsistentPoint, err)
	}
	c.s.cfg.Logger.Info("pgcdc: snapshot for the initial load", "slot", slot, "lsn", lsn.String(), "temporary", temporary)
	return lsn, res.SnapshotName, nil
}

// importSnapshot opens the loader's connection in a transaction under the
// exported snapshot. It must run before the replication connection issues
// another command, which ends the export.
func (c *cursor) importSnapshot(ctx context.Context, l *loader, snap string) error {
	conn, err := c.s.connect(ctx)
	if err != nil {
		return err
	}
	l.conn = conn
	if _, err := conn.Exec(ctx, `BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY`); err != nil {
		return fmt.Errorf("pgcdc: initial load: begin: %w", err)
	}
	if _, err := conn.Exec(ctx, `SET TRANSACTION SNAPSHOT '`+snap+`'`); err != nil {
		return fmt.Errorf("pgcdc: initial load: import snapshot %s: %w", snap, err)
	}
	return nil
}

// resumeLoad continues from a position that carries load state: the copy
// goes on with the first table not copied whole, under a new snapshot (the
// first one died with its session), and those tables' changes committed
// before it are skipped while streaming; or, if the copy is done,
// streaming goes on with the filters.
func (c *cursor) resumeLoad(ctx context.Context, si slotInfo, start Pos) error {
	s := c.s
	st, err := decodeLoadState(start.Load)
	if err != nil {
		return err
	}
	if si.confirmed > start.LSN {
		return fmt.Errorf("%w: slot %q has confirmed %s, past the resume position %s: the changes in between are not in the target; %s",
			ErrSlotAhead, s.cfg.Slot, si.confirmed, start.LSN, restartLoad)
	}
	c.startLSN = start.LSN
	c.filters = st.filters
	if !st.copying {
		return nil
	}
	plan, err := c.publishedTables(ctx)
	if err != nil {
		return err
	}
	if planHash(plan) != st.plan {
		return fmt.Errorf("%w: the tables of publication %q changed during the load; %s", ErrLoad, s.cfg.Publication, restartLoad)
	}
	next := int(st.table)
	if st.complete {
		next++
	}
	if next >= len(plan) {
		return nil // copied whole: stream, with the filters
	}
	tmp := fmt.Sprintf("%s_load_%d", s.cfg.Slot, time.Now().UnixNano()%1_000_000_000)
	snapLSN, snap, err := c.exportSnapshot(ctx, tmp, true)
	if err != nil {
		return err
	}
	for _, t := range plan[next:] {
		st.filters[t] = snapLSN
	}
	st.table, st.complete = uint32(next), false
	l := &loader{plan: plan, first: next, start: start.LSN, seq: start.Seq, state: st}
	c.load, c.filters = l, st.filters
	s.cfg.Logger.Info("pgcdc: initial load resumes", "slot", s.cfg.Slot, "table", plan[next], "tables_left", len(plan)-next, "snapshot", snapLSN.String())
	return c.importSnapshot(ctx, l, snap)
}

// runLoad copies the tables from the loader's first, each preceded by a
// truncate, in chunks of LoadBatchRows rows.
func (c *cursor) runLoad(ctx context.Context) error {
	l := c.load
	for i := l.first; i < len(l.plan); i++ {
		if err := c.copyTable(ctx, l, i); err != nil {
			return err
		}
	}
	if _, err := l.conn.Exec(ctx, `COMMIT`); err != nil {
		return fmt.Errorf("pgcdc: initial load: end the snapshot's transaction: %w", err)
	}
	c.s.cfg.Logger.Info("pgcdc: initial load copied", "slot", c.s.cfg.Slot, "tables", len(l.plan)-l.first)
	return nil
}

// copyTable copies table i of the plan.
func (c *cursor) copyTable(ctx context.Context, l *loader, i int) error {
	s := c.s
	name := l.plan[i]
	rel, err := c.describe(ctx, l.conn, name)
	if err != nil {
		return err
	}
	now := time.Now()
	l.state.table, l.state.complete = uint32(i), false
	chunk := []replicate.Record{c.loadRecord(l, appendChangeHeader(nil, OpTruncate, 0, l.start, now), rel, []byte{0})}
	flush := func(last bool) error {
		if last {
			l.state.complete = true
			lr := &chunk[len(chunk)-1]
			lr.Pos = Pos{LSN: l.start, Seq: l.seq, Load: l.state.encode()}.Encode()
		}
		n := len(chunk)
		if !c.push(ctx, chunk, nil) {
			return ctx.Err()
		}
		c.stats.update(func(st *Stats) { st.LoadedRows += uint64(n) })
		chunk = nil
		return nil
	}
	cols := ""
	for j, col := range rel.cols {
		if j > 0 {
			cols += ", "
		}
		cols += pgx.Identifier{col.Name}.Sanitize()
	}
	rr := l.conn.PgConn().ExecParams(ctx, `SELECT `+cols+` FROM ONLY `+quoteQualified(name), nil, nil, nil, nil)
	for rr.NextRow() {
		vals := rr.Values()
		b := appendChangeHeader(make([]byte, 0, 64+len(rel.header)), OpInsert, 0, l.start, now)
		b = append(b, rel.header...)
		b = append(b, 0, 'N')
		for _, v := range vals {
			if v == nil {
				b = append(b, byte(ValueNull))
				continue
			}
			b = append(b, byte(ValueText))
			b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
			b = append(b, v...)
		}
		chunk = append(chunk, c.loadRecord(l, b, rel, nil))
		if len(chunk) >= s.cfg.LoadBatchRows {
			if err := flush(false); err != nil {
				rr.Close()
				return err
			}
		}
	}
	if _, err := rr.Close(); err != nil {
		return fmt.Errorf("pgcdc: initial load: copy %s: %w", name, err)
	}
	if len(chunk) == 0 {
		// The last chunk went out full; mark the table done with a
		// record of its own.
		chunk = append(chunk, c.loadRecord(l, appendChangeHeader(nil, OpProgress, 0, l.start, now), nil, nil))
	}
	if err := flush(true); err != nil {
		return err
	}
	c.stats.update(func(st *Stats) { st.LoadedTables++ })
	return nil
}

// loadRecord finishes a record of the load: the relation and tail for a
// change (rel nil: data is complete) and the next position, with the state.
func (c *cursor) loadRecord(l *loader, data []byte, rel *relation, tail []byte) replicate.Record {
	if rel != nil && tail != nil {
		data = append(append(data, rel.header...), tail...)
	}
	l.seq++
	return replicate.Record{Pos: Pos{LSN: l.start, Seq: l.seq, Load: l.state.encode()}.Encode(), Data: data}
}

// describe reads a table's columns as pgoutput would announce them: not
// dropped, not generated, key flags from the replica identity.
func (c *cursor) describe(ctx context.Context, conn *pgx.Conn, name string) (*relation, error) {
	rows, err := conn.Query(ctx, `SELECT a.attname, a.atttypid, a.atttypmod,
		  coalesce(cl.relreplident = 'f' OR a.attnum = ANY (
		    SELECT unnest(i.indkey) FROM pg_index i WHERE i.indrelid = cl.oid AND
		      ((cl.relreplident = 'd' AND i.indisprimary) OR (cl.relreplident = 'i' AND i.indisreplident))), false),
		  n.nspname, cl.relname
		FROM pg_class cl JOIN pg_namespace n ON n.oid = cl.relnamespace
		JOIN pg_attribute a ON a.attrelid = cl.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
		WHERE cl.oid = $1::regclass ORDER BY a.attnum`, quoteQualified(name))
	if err != nil {
		return nil, fmt.Errorf("pgcdc: initial load: describe %s: %w", name, err)
	}
	defer rows.Close()
	rel := &relation{name: name}
	for rows.Next() {
		var col Column
		if err := rows.Scan(&col.Name, &col.Type, &col.TypeMod, &col.Key, &rel.schema, &rel.table); err != nil {
			return nil, fmt.Errorf("pgcdc: initial load: describe %s: %w", name, err)
		}
		if _, ok := c.typeMap.TypeForOID(col.Type); !ok {
			return nil, fmt.Errorf("%w: table %s column %q has type OID %d; only types built into PostgreSQL are replicated", ErrUnsupportedType, name, col.Name, col.Type)
		}
		rel.cols = append(rel.cols, col)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgcdc: initial load: describe %s: %w", name, err)
	}
	rel.header = appendRelation(nil, rel.schema, rel.table, rel.cols)
	return rel, nil
}

// quoteQualified quotes "schema.table" as an identifier pair.
func quoteQualified(name string) string {
	for i := 0; i < len(name); i++ {
		if name[i] == '.' {
			return pgx.Identifier{name[:i], name[i+1:]}.Sanitize()
		}
	}
	return pgx.Identifier{name}.Sanitize()
}
