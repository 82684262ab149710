package pgsink

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/pgcdc"
)

// errCommitUnknown marks a failure while the COMMIT was under way: the
// transaction may have committed.
var errCommitUnknown = errors.New("outcome unknown")

// claim says how one transaction claims the position row.
type claim struct {
	pos       replicate.Position // the new position (nil: keep it)
	from      replicate.Position // the expected position (nil: no condition; empty: none stored)
	heartbeat *replicate.Heartbeat
}

// result is what transact found.
type result struct {
	ok         bool // the claim changed the row and the batch committed
	changes    int
	lastLSN    pgcdc.LSN
	heartbeats []time.Time // commit times of the heartbeat changes applied
}

// session is the state of one connection: prepared statements and the
// tables checked against the target. It lives and dies with the
// connection.
type session struct {
	s        *Sink
	prepared map[string]string // SQL -> statement name
	seq      int               // the last statement number used
	tables   map[*pgcdc.Column]*table
	dec      pgcdc.Decoder
	types    *pgtype.Map
}

func newSession(s *Sink) *session {
	return &session{s: s, prepared: map[string]string{}, tables: map[*pgcdc.Column]*table{}, types: pgtype.NewMap()}
}

// table is a source table as checked against the target.
type table struct {
	name string // quoted schema.table
	desc string // schema.table for errors
	cols []pgcdc.Column
	keys []int // indexes of the key columns
	qcol []string
	// upsert: the target has a unique index on the key columns, so an
	// insert is INSERT ... ON CONFLICT (key) DO UPDATE.
	upsert bool
}

// defaultMaxPrepared bounds the statements a session keeps prepared.
// Their texts vary with the tables, the rows per statement and the
// columns an update sets, so over a long session with many tables they
// would grow without end, on the server as much as here.
const defaultMaxPrepared = 1024

// forgetPrepared deallocates the session's statements once there are
// more than the Sink's bound. It runs before a transaction's batch is
// built, so no statement queued in it is dropped.
func (ss *session) forgetPrepared(ctx context.Context, c *pgx.Conn) error {
	if len(ss.prepared) <= ss.s.maxPrepared {
		return nil
	}
	var q strings.Builder
	for _, name := range ss.prepared {
		q.WriteString("DEALLOCATE " + name + ";")
	}
	if err := c.PgConn().Exec(ctx, q.String()).Close(); err != nil {
		return fmt.Errorf("pgsink: stream %q: deallocate %d prepared statements: %w", ss.s.cfg.Stream, len(ss.prepared), err)
	}
	clear(ss.prepared)
	return nil
}

// prepare returns the name of the prepared statement for sql.
func (ss *session) prepare(ctx context.Context, c *pgx.Conn, sql string) (string, error) {
	if name, ok := ss.prepared[sql]; ok {
		return name, nil
	}
	ss.seq++
	name := "hakit_" + strconv.Itoa(ss.seq)
	if _, err := c.PgConn().Prepare(ctx, name, sql, nil); err != nil {
		return "", err
	}
	ss.prepared[sql] = name
	return name, nil
}

// op is one statement of the pipeline and what to check of its result.
type op struct {
	change *pgcdc.Change // nil: not a row change (BEGIN, the claim)
	tbl    *table
	want   int64           // minimum rows affected; 0: no check
	rows   []*pgcdc.Change // the changes of a multi-row delete
	desc   string          // the tables of a truncate of several, for errors ("": tbl's)
}

// transact runs the claim and the batch in one transaction.
func (ss *session) transact(ctx context.Context, c *pgx.Conn, t fence.Token, cl claim, batch []replicate.Record) (result, error) {
	var res result
	changes := make([]*pgcdc.Change, 0, len(batch))
	for i, r := range batch {
		ch, err := ss.dec.Decode(r.Data)
		if err != nil {
			return res, fmt.Errorf("pgsink: record %d of %d at %s: %w", i+1, len(batch), FormatPos(r.Pos), err)
		}
		changes = append(changes, ch)
	}
	if err := ss.forgetPrepared(ctx, c); err != nil {
		return res, err
	}
	b := &pgconn.Batch{}
	ops := []op{{}}
	b.ExecParams("BEGIN", nil, nil, nil, nil)
	if err := ss.addClaim(ctx, c, b, t, cl, changes); err != nil {
		return res, err
	}
	ops = append(ops, op{})
	wops, err := ss.addChanges(ctx, c, b, changes)
	if err != nil {
		return res, err
	}
	ops = append(ops, wops...)

	claimed, err := ss.exec(ctx, c, b, ops)
	if err != nil || !claimed {
		if rerr := rollback(ctx, c); err == nil && rerr != nil {
			err = rerr
		}
		return res, err
	}
	results, err := c.PgConn().Exec(ctx, "COMMIT").ReadAll()
	if err != nil {
		return res, fmt.Errorf("pgsink: stream %q: commit under token %d: %w: %w", ss.s.cfg.Stream, t, errCommitUnknown, err)
	}
	// COMMIT of a transaction that failed is a ROLLBACK without an
	// error: make sure it committed.
	if len(results) != 1 || results[0].CommandTag.String() != "COMMIT" {
		return res, fmt.Errorf("pgsink: stream %q: commit under token %d did not commit (%v)", ss.s.cfg.Stream, t, results)
	}
	res.ok = true
	for _, ch := range changes {
		if ch.Op != pgcdc.OpProgress {
			res.changes++
		}
		if ss.s.cfg.HeartbeatTable != "" && ch.Op != pgcdc.OpProgress && ch.Schema+"."+ch.Table == ss.s.cfg.HeartbeatTable {
			res.heartbeats = append(res.heartbeats, ch.CommitTime)
		}
	}
	if len(batch) > 0 {
		if p, err := pgcdc.DecodePos(batch[len(batch)-1].Pos); err == nil {
			res.lastLSN = p.LSN
		}
	}
	return res, nil
}

func rollback(ctx context.Context, c *pgx.Conn) error {
	if c.PgConn().IsClosed() {
		return nil
	}
	_, err := c.PgConn().Exec(context.WithoutCancel(ctx), "ROLLBACK").ReadAll()
	return err
}

// exec sends the pipeline and checks every result. claimed is false if
// the claim changed no row.
func (ss *session) exec(ctx context.Context, c *pgx.Conn, b *pgconn.Batch, ops []op) (claimed bool, err error) {
	mrr := c.PgConn().ExecBatch(ctx, b)
	var first error
	i := 0
	for ; mrr.NextResult(); i++ {
		tag, err := mrr.ResultReader().Close()
		if first != nil || i >= len(ops) {
			continue
		}
		o := ops[i]
		switch {
		case err != nil && o.change != nil:
			first = ss.changeErr(o, err)
		case err != nil:
			first = fmt.Errorf("pgsink: stream %q: claim position row in %s: %w", ss.s.cfg.Stream, ss.s.cfg.PositionTable, err)
		case i == 1:
			claimed = tag.RowsAffected() == 1
		case o.want > 0 && tag.RowsAffected() < o.want && o.rows != nil:
			first = fmt.Errorf("%w: delete of %d rows of %s (keys (%s) to (%s)) found %d in the target", ErrDiverged, len(o.rows), o.tbl.desc,
				keyText(o.rows[0], o.tbl), keyText(o.rows[len(o.rows)-1], o.tbl), tag.RowsAffected())
		case o.want > 0 && tag.RowsAffected() < o.want:
			first = fmt.Errorf("%w: %s of %s key (%s): no such row in the target", ErrDiverged, o.change.Op, o.tbl.desc, keyText(o.change, o.tbl))
		}
	}
	if err := mrr.Close(); err != nil && first == nil {
		// The statement that failed ended the results.
		switch {
		case i < len(ops) && ops[i].change != nil:
			first = ss.changeErr(ops[i], err)
		case i == 1:
			first = fmt.Errorf("pgsink: stream %q: claim position row in %s: %w", ss.s.cfg.Stream, ss.s.cfg.PositionTable, err)
		default:
			first = fmt.Errorf("pgsink: stream %q: apply: %w", ss.s.cfg.Stream, err)
		}
	}
	if first != nil {
		return false, first
	}
	return claimed, nil
}

func (ss *session) changeErr(o op, err error) error {
	ch := o.change
	desc := o.tbl.desc
	if o.desc != "" {
		desc = o.desc
	}
	msg := fmt.Sprintf("pgsink: %s of %s", ch.Op, desc)
	if ch.Op != pgcdc.OpTruncate && ch.Op != pgcdc.OpInsert {
		msg += " key (" + keyText(ch, o.tbl) + ")"
	}
	pe := pgErr(err)
	if pe != nil && pe.ColumnName != "" {
		msg += " column " + strconv.Quote(pe.ColumnName)
	}
	if pe != nil && pe.Code == "23505" && ch.Op == pgcdc.OpInsert {
		// unique_violation: the row is there already.
		return fmt.Errorf("%w: %s (transaction %d, commit %s): the row is already in the target (%s): %w", ErrDiverged, msg, ch.XID, ch.CommitLSN, pe.Detail, err)
	}
	return fmt.Errorf("%s (transaction %d, commit %s): %w", msg, ch.XID, ch.CommitLSN, err)
}

func keyText(ch *pgcdc.Change, tbl *table) string {
	var parts []string
	for i, v := range ch.Key() {
		name := "?"
		if i < len(tbl.keys) {
			name = tbl.cols[tbl.keys[i]].Name
		}
		val := "NULL"
		if v.Kind == pgcdc.ValueText {
			val = string(v.Text)
		}
		parts = append(parts, name+"="+val)
	}
	return strings.Join(parts, ", ")
}

// addClaim queues the UPDATE of the position row.
func (ss *session) addClaim(ctx context.Context, c *pgx.Conn, b *pgconn.Batch, t fence.Token, cl claim, changes []*pgcdc.Change) error {
	pt := ss.s.cfg.PositionTable
	q := `UPDATE ` + pt + ` SET token = $1, updated_at = now()`
	args := [][]byte{[]byte(strconv.FormatUint(uint64(t), 10)), []byte(ss.s.cfg.Stream)}
	formats := []int16{0, 0}
	switch {
	case cl.heartbeat != nil:
		q += `, heartbeat_at = $3, heartbeat_pos = $4`
		args = append(args, []byte(cl.heartbeat.Time.UTC().Format("2006-01-02 15:04:05.999999999Z07:00")), cl.heartbeat.Pos)
		formats = append(formats, 0, 1)
	case cl.pos != nil:
		q += `, pos = $3, source_time = $4`
		var st []byte
		if n := len(changes); n > 0 && !changes[n-1].CommitTime.IsZero() {
			st = []byte(changes[n-1].CommitTime.Format("2006-01-02 15:04:05.999999Z07:00"))
		}
		args = append(args, cl.pos, st)
		formats = append(formats, 1, 0)
	}
	q += ` WHERE stream = $2 AND token <= $1`
	switch {
	case cl.from == nil:
	case len(cl.from) == 0:
		q += ` AND (pos IS NULL OR length(pos) = 0)`
	default:
		args = append(args, cl.from)
		formats = append(formats, 1)
		q += ` AND pos = $` + strconv.Itoa(len(args))
	}
	name, err := ss.prepare(ctx, c, q)
	if err != nil {
		return fmt.Errorf("pgsink: stream %q: prepare the claim of %s on %s: %w", ss.s.cfg.Stream, pt, ss.s.where(), err)
	}
	b.ExecPrepared(name, args, formats, nil)
	return nil
}

// diagnose explains a claim that changed no row: a larger token (stale),
// another position (mismatch), or no row yet (created here; the caller
// tries again).
func (ss *session) diagnose(ctx context.Context, c *pgx.Conn, t fence.Token, cl claim) error {
	pt, stream := ss.s.cfg.PositionTable, ss.s.cfg.Stream
	var cur int64
	var pos []byte
	err := c.QueryRow(ctx, `SELECT token, pos FROM `+pt+` WHERE stream = $1`, stream).Scan(&cur, &pos)
	switch {
	case err == nil:
		if fence.Token(cur) > t {
			return fmt.Errorf("pgsink: stream %q: %w", stream, fence.Stale(t, fence.Token(cur)))
		}
		if cl.from != nil && !replicate.SamePosition(pos, cl.from) {
			return fmt.Errorf("pgsink: stream %q: apply under token %d (sink at %s, expected %s): %w", stream, t, FormatPos(pos), FormatPos(cl.from), replicate.PositionMismatch(cl.from, pos))
		}
		return nil // changed concurrently; try again
	case !errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("pgsink: stream %q: read position row: %w", stream, err)
	case len(cl.from) > 0:
		return fmt.Errorf("pgsink: stream %q: apply under token %d (no position stored, expected %s): %w", stream, t, FormatPos(cl.from), replicate.PositionMismatch(cl.from, nil))
	}
	// The row is the target's state for this stream: it gets its ID now
	// (see Identity).
	_, err = c.Exec(ctx, `INSERT INTO `+pt+` (stream, token, sink_id) VALUES ($1, $2, $3) ON CONFLICT (stream) DO NOTHING`,
		stream, int64(t), replicate.NewSinkID())
	if err != nil {
		return fmt.Errorf("pgsink: stream %q: create position row in %s: %w", stream, pt, err)
	}
	return nil
}
