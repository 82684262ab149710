// Package sqlsink is a replication Sink on database/sql that applies each
// batch together with its position and fencing token in one transaction,
// so a replicate.Stream delivers to it exactly once across failovers.
//
// # The transaction
//
// Every Apply runs, in one transaction:
//
//	UPDATE <positions> SET token = $t, pos = $p WHERE stream = $s AND token <= $t
//
// and then the batch's writes. The UPDATE locks the stream's position row,
// so concurrent Applies of one stream serialize on it; under READ
// COMMITTED, PostgreSQL re-checks the WHERE clause against the row a
// concurrent transaction committed, so once a larger token has committed,
// every Apply under a smaller one updates no row and is refused with
// fence.ErrStale without writing anything. The first Apply of a stream
// inserts the row. Under REPEATABLE READ or SERIALIZABLE as the database's
// default, such a race ends in a serialization failure instead: still
// nothing is written, but the error is the driver's, not fence.ErrStale.
//
// ApplyAt adds "AND pos = $from" to that UPDATE (for the first batch, a
// row with no position, or none), which makes the Sink a
// replicate.ConditionalSink: a Stream then applies each batch only at the
// position it expects, and a batch an earlier Run of the same term gave up
// on but the database committed anyway cannot be applied a second time.
//
// Records go, by default, to a table (stream, pos, data) whose primary key
// is (stream, pos), so a duplicate could not even be stored silently;
// Config.ApplyFunc replaces that with the caller's own writes in the same
// transaction (the usual case: apply change records to real tables).
//
// # Dialect and driver
//
// The statements use PostgreSQL syntax ($n placeholders, bytea,
// timestamptz, ON CONFLICT). OpenPostgres opens a database through
// github.com/jackc/pgx/v5/stdlib, the driver this package is tested with.
// It was chosen because it is pure Go (no cgo, so the binary stays static),
// actively maintained — lib/pq, the other database/sql driver, is in
// maintenance mode and recommends pgx — honours context cancellation by
// cancelling the query on the server, supports TLS through the usual
// sslmode/sslrootcert connection parameters, and maps bytea to []byte
// without copies through text. Any other PostgreSQL driver for
// database/sql works with New.
package sqlsink

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/replicate"
)

// Defaults for Config fields left empty.
const (
	DefaultPositionTable = "hakit_positions"
	DefaultRecordTable   = "hakit_records"
)

// ErrConfig is wrapped by every error New returns for a Config it refuses;
// each message reads "sqlsink: invalid config: Field: rule".
var ErrConfig = errors.New("sqlsink: invalid config")

// maxRowsPerInsert keeps the default insert below PostgreSQL's 65535
// parameters per statement.
const maxRowsPerInsert = 1000

// Config configures a Sink.
type Config struct {
	DB     *sql.DB // required
	Stream string  // required: this stream's row in the position table

	// PositionTable and RecordTable name the tables (optionally
	// schema-qualified identifiers of letters, digits and underscores).
	PositionTable string // "": DefaultPositionTable
	RecordTable   string // "": DefaultRecordTable; unused with ApplyFunc

	// ApplyFunc, if set, writes batch in tx instead of the default insert
	// into RecordTable. It must not commit or roll back tx, and must not
	// keep the batch slice.
	ApplyFunc func(ctx context.Context, tx *sql.Tx, batch []replicate.Record) error
}

// Sink is the SQL sink. It implements replicate.DurableSink and
// replicate.HeartbeatSink and is safe for concurrent use.
type Sink struct {
	db     *sql.DB
	stream string
	apply  func(ctx context.Context, tx *sql.Tx, batch []replicate.Record) error

	posTable, recTable string
	ownTable           bool // records go to recTable (no ApplyFunc)
}

var (
	_ replicate.ConditionalSink = (*Sink)(nil)
	_ replicate.HeartbeatSink   = (*Sink)(nil)
	_ replicate.IdentifiedSink  = (*Sink)(nil)
)

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$`)

// New fills in cfg's defaults, validates it and returns a Sink. An invalid
// cfg is refused with an error wrapping ErrConfig that names every broken
// field. New does not touch the database; call Setup to create the tables.
func New(cfg Config) (*Sink, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Sink{db: cfg.DB, stream: cfg.Stream, posTable: cfg.PositionTable, recTable: cfg.RecordTable, apply: cfg.ApplyFunc}
	if s.apply == nil {
		s.apply, s.ownTable = s.insertRecords, true
	}
	return s, nil
}

func (c Config) withDefaults() Config {
	if c.PositionTable == "" {
		c.PositionTable = DefaultPositionTable
	}
	if c.RecordTable == "" {
		c.RecordTable = DefaultRecordTable
	}
	return c
}

func (c Config) validate() error {
	var errs []error
	bad := func(field, rule string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(rule, args...)))
	}
	if c.DB == nil {
		bad("DB", "is required")
	}
	if c.Stream == "" {
		bad("Stream", "must not be empty")
	}
	if !identRE.MatchString(c.PositionTable) {
		bad("PositionTable", "%q is not a plain (schema.)identifier", c.PositionTable)
	}
	if !identRE.MatchString(c.RecordTable) {
		bad("RecordTable", "%q is not a plain (schema.)identifier", c.RecordTable)
	}
	return errors.Join(errs...)
}

// OpenPostgres opens a PostgreSQL database through the pgx driver.
// dsn is a pgx connection string ("postgres://user@host:5432/db?sslmode=verify-full").
func OpenPostgres(dsn string) (*sql.DB, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlsink: parse connection string: %w", err)
	}
	return stdlib.OpenDB(*cfg), nil
}

// Setup creates the position table and, unless ApplyFunc is set, the
// record table, if they do not exist, and adds the identity columns
// (sink_id, stream_key) to a position table created by an earlier
// release. Run it again after upgrading.
func (s *Sink) Setup(ctx context.Context) error {
	stmts := []string{`CREATE TABLE IF NOT EXISTS ` + s.posTable + ` (
		stream text PRIMARY KEY,
		token bigint NOT NULL,
		pos bytea,
		heartbeat_at timestamptz,
		heartbeat_pos bytea,
		updated_at timestamptz NOT NULL DEFAULT now(),
		sink_id text,
		stream_key text)`,
		// A table created by an earlier release gains the identity
		// columns (see Identity).
		`ALTER TABLE ` + s.posTable + ` ADD COLUMN IF NOT EXISTS sink_id text`,
		`ALTER TABLE ` + s.posTable + ` ADD COLUMN IF NOT EXISTS stream_key text`}
	if s.ownTable {
		stmts = append(stmts, `CREATE TABLE IF NOT EXISTS `+s.recTable+` (
		stream text NOT NULL,
		pos bytea NOT NULL,
		data bytea NOT NULL,
		PRIMARY KEY (stream, pos))`)
	}
	for _, q := range stmts {
		if _, err := s.db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("sqlsink: setup: %w", err)
		}
	}
	return nil
}

// Apply writes batch and its last position under token t in one
// transaction guarded by the token (see the package doc). A token below
// the stream's fails with an error matching fence.ErrStale and writes
// nothing. An empty batch writes no records and keeps the position, but
// still admits t (replicate.DurableSink): a Stream fences the sink that
// way before it reads Position.
func (s *Sink) Apply(ctx context.Context, t fence.Token, batch []replicate.Record) error {
	return s.applyBatch(ctx, t, batch, nil)
}

// ApplyAt is Apply if the stream's committed position equals from (nil:
// nothing applied yet — no position row, or one with no position), the
// test being part of the UPDATE that claims the row:
//
//	UPDATE <positions> SET token = $t, pos = $p WHERE stream = $s AND token <= $t AND pos = $from
//
// Under READ COMMITTED, PostgreSQL re-checks that WHERE clause against a
// row a concurrent transaction committed, so of two transactions applying
// at one position only the first to commit writes; the other updates no
// row and is refused with an error matching replicate.ErrPositionMismatch
// that names the stream and both positions, having written nothing. A
// stale t fails with fence.ErrStale first. With it the Sink is a
// replicate.ConditionalSink, and a Stream applies every batch this way, so
// a batch of an earlier Run of the same term that committed after the
// client gave up on it (its context ended while the COMMIT was under way)
// is never applied twice.
//
// A type that embeds *Sink and changes what Apply does must change ApplyAt
// the same way: a Stream calls ApplyAt, not Apply.
func (s *Sink) ApplyAt(ctx context.Context, t fence.Token, from replicate.Position, batch []replicate.Record) error {
	if from == nil {
		from = replicate.Position{} // "expect nothing applied", as opposed to no condition
	}
	return s.applyBatch(ctx, t, batch, from)
}

// applyBatch is Apply, conditional on the position if from is not nil.
func (s *Sink) applyBatch(ctx context.Context, t fence.Token, batch []replicate.Record, from replicate.Position) error {
	op := txOp{from: from}
	if len(batch) > 0 {
		op.set, op.args = "pos = $3", []any{[]byte(batch[len(batch)-1].Pos)}
		op.f = func(tx *sql.Tx) error {
			if err := s.apply(ctx, tx, batch); err != nil {
				return fmt.Errorf("sqlsink: stream %q: apply %d records: %w", s.stream, len(batch), err)
			}
			return nil
		}
	}
	return s.inTx(ctx, t, op)
}

// ApplyHeartbeat stores hb's time and position in the stream's row under
// token t (the "heartbeat table"): the target then shows how fresh it is
// even when no data flows.
func (s *Sink) ApplyHeartbeat(ctx context.Context, t fence.Token, hb replicate.Heartbeat) error {
	return s.inTx(ctx, t, txOp{set: "heartbeat_at = $3, heartbeat_pos = $4", args: []any{hb.Time, []byte(hb.Pos)}})
}

// txOp is what one transaction does besides claiming the row for a token.
type txOp struct {
	set  string // extra SET clause, "" for none; its placeholders start at $3
	args []any  // the values of set's placeholders
	// from, if not nil, is the position the row must hold for the claim
	// to succeed; empty means none (no row, or a NULL or empty pos).
	from replicate.Position
	f    func(*sql.Tx) error // the batch's writes, or nil
}

// inTx claims the stream's row for token t with op's SET clause and
// condition and runs op.f, if not nil, in the same transaction.
func (s *Sink) inTx(ctx context.Context, t fence.Token, op txOp) error {
	if t == 0 {
		return fence.ErrNoToken
	}
	if t > math.MaxInt64 {
		return fmt.Errorf("sqlsink: token %d does not fit the bigint token column", t)
	}
	for attempt := 0; ; attempt++ {
		err := s.tryTx(ctx, t, op)
		if !errors.Is(err, errRetry) || attempt > 3 {
			return err
		}
	}
}

// errRetry: the stream's row was inserted concurrently; try again.
var errRetry = errors.New("sqlsink: position row created concurrently")

func (s *Sink) tryTx(ctx context.Context, t fence.Token, op txOp) (err error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlsink: stream %q: begin: %w", s.stream, err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	set := op.set
	all := append([]any{int64(t), s.stream}, op.args...)
	update := `UPDATE ` + s.posTable + ` SET token = $1, updated_at = now()`
	if set != "" {
		update += `, ` + set
	}
	update += ` WHERE stream = $2 AND token <= $1`
	updateArgs := all
	switch {
	case op.from == nil:
	case len(op.from) == 0:
		update += ` AND (pos IS NULL OR length(pos) = 0)`
	default:
		updateArgs = append(slices.Clip(all), []byte(op.from))
		update += fmt.Sprintf(` AND pos = $%d`, len(updateArgs))
	}
	res, err := tx.ExecContext(ctx, update, updateArgs...)
	if err != nil {
		return fmt.Errorf("sqlsink: stream %q: claim position row under token %d: %w", s.stream, t, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("sqlsink: stream %q: %w", s.stream, err)
	} else if n == 0 {
		var cur int64
		var pos []byte
		err := tx.QueryRowContext(ctx, `SELECT token, pos FROM `+s.posTable+` WHERE stream = $1`, s.stream).Scan(&cur, &pos)
		switch {
		case err == nil:
			if fence.Token(cur) > t {
				return fmt.Errorf("sqlsink: stream %q: %w", s.stream, fence.Stale(t, fence.Token(cur)))
			}
			if op.from != nil && !replicate.SamePosition(pos, op.from) {
				return fmt.Errorf("sqlsink: stream %q: apply under token %d: %w", s.stream, t, replicate.PositionMismatch(op.from, pos))
			}
			// The row admits t, so it changed between the UPDATE and
			// this read (a concurrent transaction created or moved
			// it); look again.
			return errRetry
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("sqlsink: stream %q: read token: %w", s.stream, err)
		case len(op.from) > 0:
			return fmt.Errorf("sqlsink: stream %q: apply under token %d: %w", s.stream, t, replicate.PositionMismatch(op.from, nil))
		}
		cols, vals := `token, stream`, `$1, $2`
		if set != "" {
			c, v := insertColumns(set)
			cols, vals = cols+`, `+c, vals+`, `+v
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO `+s.posTable+` (`+cols+`) VALUES (`+vals+`) ON CONFLICT (stream) DO NOTHING`, all...)
		if err != nil {
			return fmt.Errorf("sqlsink: stream %q: create position row: %w", s.stream, err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return errRetry
		}
	}
	if f := op.f; f != nil {
		if err := f(tx); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlsink: stream %q: commit under token %d: %w", s.stream, t, err)
	}
	return nil
}

// insertColumns turns "a = $3, b = $4" into "a, b" and "$3, $4".
func insertColumns(set string) (cols, vals string) {
	var c, v []string
	for _, part := range strings.Split(set, ",") {
		name, val, _ := strings.Cut(part, "=")
		c, v = append(c, strings.TrimSpace(name)), append(v, strings.TrimSpace(val))
	}
	return strings.Join(c, ", "), strings.Join(v, ", ")
}

// insertRecords is the default ApplyFunc: multi-row inserts into RecordTable.
func (s *Sink) insertRecords(ctx context.Context, tx *sql.Tx, batch []replicate.Record) error {
	for len(batch) > 0 {
		n := min(len(batch), maxRowsPerInsert)
		var q strings.Builder
		q.WriteString(`INSERT INTO ` + s.recTable + ` (stream, pos, data) VALUES `)
		args := make([]any, 0, 1+2*n)
		args = append(args, s.stream)
		for i, r := range batch[:n] {
			if i > 0 {
				q.WriteString(", ")
			}
			fmt.Fprintf(&q, "($1, $%d, $%d)", 2+2*i, 3+2*i)
			data := r.Data
			if data == nil {
				data = []byte{}
			}
			args = append(args, []byte(r.Pos), data)
		}
		if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
			return err
		}
		batch = batch[n:]
	}
	return nil
}

// Position returns the stream's committed position, or nil if nothing was
// applied (replicate.DurableSink).
func (s *Sink) Position(ctx context.Context) (replicate.Position, error) {
	var pos []byte
	err := s.db.QueryRowContext(ctx, `SELECT pos FROM `+s.posTable+` WHERE stream = $1`, s.stream).Scan(&pos)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sqlsink: stream %q: read position: %w", s.stream, err)
	}
	if len(pos) == 0 {
		return nil, nil
	}
	return pos, nil
}

// Row is the stream's position row.
type Row struct {
	Token        fence.Token
	Pos          replicate.Position
	HeartbeatAt  time.Time // zero: no heartbeat yet
	HeartbeatPos replicate.Position
}

// Row reads the stream's position row; ok is false if there is none.
func (s *Sink) Row(ctx context.Context) (row Row, ok bool, err error) {
	var tok int64
	var hb sql.NullTime
	err = s.db.QueryRowContext(ctx, `SELECT token, pos, heartbeat_at, heartbeat_pos FROM `+s.posTable+` WHERE stream = $1`, s.stream).
		Scan(&tok, (*[]byte)(&row.Pos), &hb, (*[]byte)(&row.HeartbeatPos))
	if errors.Is(err, sql.ErrNoRows) {
		return Row{}, false, nil
	}
	if err != nil {
		return Row{}, false, fmt.Errorf("sqlsink: stream %q: read position row: %w", s.stream, err)
	}
	row.Token = fence.Token(tok)
	if hb.Valid {
		row.HeartbeatAt = hb.Time
	}
	return row, true, nil
}
