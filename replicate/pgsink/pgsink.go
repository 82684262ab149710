// Package pgsink applies the change records of replicate/pgcdc to
// mirrored tables in a PostgreSQL target, in the same transaction as the
// stream's position and the writer's fencing token, so that PostgreSQL to
// PostgreSQL replication through a replicate.Stream is exactly once across
// failovers.
//
// # The transaction
//
// Every Apply runs, in one transaction on the target:
//
//	UPDATE <positions> SET token = $t, pos = $p, ... WHERE stream = $s AND token <= $t [AND pos = $from]
//
// and then the batch's row changes. The UPDATE locks the stream's row, so
// applies of one stream serialize; under READ COMMITTED PostgreSQL
// re-checks the WHERE clause against a row a concurrent transaction
// committed, so once a larger token committed, an Apply under a smaller
// one changes nothing and fails with fence.ErrStale. ApplyAt adds the
// position condition, which makes the Sink a replicate.ConditionalSink: a
// batch that an earlier Run of the same term sent and gave up on cannot
// land twice. The statements of one Apply go to the server in one
// pipeline: two round trips per batch, however many rows.
//
// # Row changes
//
// An insert is an INSERT (with Config.Upsert, INSERT ... ON CONFLICT (key)
// DO UPDATE); consecutive inserts into one table, and consecutive deletes,
// go in multi-row statements. An update sets the
// columns it carries (not the TOASTed values it left unchanged, which the
// source does not send) on the row with the old key; a delete removes the
// row with the old key. Under REPLICA IDENTITY FULL the old row is found
// by all its columns and, as the source changed one row, only one of
// several equal rows is changed. A truncate truncates (with CASCADE and
// RESTART IDENTITY if the source used them); consecutive truncates go in
// one statement, so that tables referencing each other are truncated
// together as on the source. Tables are matched by schema and name. An insert whose row is already there, or an update or delete that
// finds no row, means the target diverged from the source, and stops the
// stream with an error wrapping ErrDiverged that names the table and the
// key — never a silent drop.
// Before the first change of a table, the target's columns are read: a
// missing table, a missing column, or a column type the source sent that
// is not built into PostgreSQL stops the stream with an error naming the
// table, the column and the type (ErrSchema). Values travel in
// PostgreSQL's text form and the target's input functions parse them, so
// a target column of a wider type (int8 for int4, text for varchar)
// works.
//
// Progress records move the position only; a change to Config's
// HeartbeatTable is applied like any other and also measures end-to-end
// latency: the time from the source transaction's commit (the source
// server's clock) to the commit of the target transaction that applied it
// (this process's clock), in Stats.
//
// # Identity
//
// The stream's position row also holds the target's identity: a random
// sink ID, made when the row is created, and the checkpoint key of the
// stream the row is bound to (replicate.IdentifiedSink). A target restored
// from a backup keeps its ID with the row, so a Stream recognises it,
// finds it behind the checkpoint, and delivers the changes in between
// again from the target's position if the source still has them. A
// replication slot usually has not: it was told what the target had
// committed before the backup was restored, and pgcdc refuses a slot
// whose confirmed position is past the one the stream resumes from
// (pgcdc.ErrSlotAhead, reported by the Stream as replicate.ErrGap naming
// both positions) rather than skip what is in between. Restore a newer
// backup, or load the target again. A new target, or a checkpoint key
// used for another target, has another ID and is refused with
// replicate.ErrIdentity; replicate.RebuildCheckpoint points a stream at a
// new target on purpose.
//
// # Foreign keys and triggers on the target
//
// The target's foreign keys are checked and its triggers fire as changes
// are applied, unless Config.ReplicaRole is set (see there): a cascade or
// a trigger that writes to mirrored tables makes the target diverge and
// the stream stop. The initial load truncates and copies the tables one
// at a time, in name order, so a target with foreign keys between
// mirrored tables needs ReplicaRole for the inserts, and still refuses
// the truncate of a table another one references: load such tables into
// a target without those keys, and add them after.
//
// # Privileges
//
// The target role needs INSERT, UPDATE, DELETE and TRUNCATE on the
// mirrored tables (and on the position table, which Setup creates), and
// SELECT on them for the key lookups of updates and deletes; ReplicaRole
// needs the right to set session_replication_role.
package pgsink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/pgcdc"
)

// DefaultPositionTable is the position table when Config.PositionTable is
// empty.
const DefaultPositionTable = "hakit_pg_positions"

// DefaultIdleTxTimeout is Config.IdleTxTimeout's default.
const DefaultIdleTxTimeout = 5 * time.Second

var (
	// ErrConfig is wrapped by every error about an unusable Config.
	ErrConfig = errors.New("pgsink: invalid config")
	// ErrSchema is wrapped by the error for a change the target's schema
	// cannot take: a missing table or column, or an unsupported type.
	ErrSchema = errors.New("pgsink: target schema does not match the change")
	// ErrDiverged is wrapped by the error for an update or delete whose
	// row is not in the target.
	ErrDiverged = errors.New("pgsink: target diverged from the source")
)

// Config configures a Sink.
type Config struct {
	// ConnString is the target database's pgx connection string
	// (sslmode=verify-full recommended). It may hold a password and is
	// never logged. Required.
	ConnString string
	// Stream names this stream's row in the position table. Required.
	Stream string
	// PositionTable is the position table, a (schema.)identifier; "":
	// DefaultPositionTable.
	PositionTable string
	// HeartbeatTable is the source's heartbeat table as its changes
	// arrive ("public.hakit_heartbeat"; pgcdc.Config.HeartbeatTable with
	// the schema), whose changes measure end-to-end latency; "": none.
	HeartbeatTable string
	// Upsert makes inserts INSERT ... ON CONFLICT (key) DO UPDATE, for a
	// target that may already hold some of the rows. By default an insert
	// is a plain INSERT, and a row that is already there means the target
	// diverged: the stream stops with ErrDiverged naming the table and the
	// key. Tables without a unique index on their key get plain INSERTs
	// either way.
	Upsert bool
	// MaxRowsPerStatement bounds a multi-row insert or delete; 0: 100.
	MaxRowsPerStatement int
	// IdleTxTimeout is the idle_in_transaction_session_timeout of the
	// sink's sessions: a member frozen in the middle of an Apply holds the
	// position row's lock only that long before the server rolls its
	// transaction back, so a successor is not blocked behind it. 0:
	// DefaultIdleTxTimeout; negative: the server's setting.
	IdleTxTimeout time.Duration
	// ReplicaRole runs the sink's sessions with session_replication_role
	// = replica, as PostgreSQL's own subscriber does: while changes are
	// applied, the target checks no foreign key and fires no ordinary
	// trigger (the source checked them, and what its triggers and
	// cascades did arrives as changes of its own). It needs a superuser,
	// or on PostgreSQL 15 and later GRANT SET ON PARAMETER
	// session_replication_role. Without it, a foreign key with ON DELETE
	// CASCADE, or a trigger that writes to mirrored tables, on the target
	// changes rows a later change then finds missing or present, and the
	// stream stops with ErrDiverged.
	ReplicaRole bool
	Logger      *slog.Logger // nil: slog.Default()
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$`)

func (c Config) withDefaults() Config {
	if c.PositionTable == "" {
		c.PositionTable = DefaultPositionTable
	}
	if c.MaxRowsPerStatement == 0 {
		c.MaxRowsPerStatement = 100
	}
	if c.IdleTxTimeout == 0 {
		c.IdleTxTimeout = DefaultIdleTxTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c Config) validate() error {
	var errs []error
	bad := func(field, rule string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(rule, args...)))
	}
	if c.ConnString == "" {
		bad("ConnString", "is required (a pgx connection string)")
	} else if _, err := pgx.ParseConfig(c.ConnString); err != nil {
		bad("ConnString", "cannot be parsed as a pgx connection string")
	}
	if c.Stream == "" {
		bad("Stream", "is required")
	}
	if !identRE.MatchString(c.PositionTable) {
		bad("PositionTable", "must be a (schema.)identifier of letters, digits and underscores, not %q", c.PositionTable)
	}
	if c.HeartbeatTable != "" && !identRE.MatchString(c.HeartbeatTable) {
		bad("HeartbeatTable", "must be a (schema.)identifier of letters, digits and underscores, not %q", c.HeartbeatTable)
	}
	if c.MaxRowsPerStatement < 1 || c.MaxRowsPerStatement > 1000 {
		bad("MaxRowsPerStatement", "must be between 1 and 1000, not %d", c.MaxRowsPerStatement)
	}
	return errors.Join(errs...)
}

// Sink applies pgcdc change records to a PostgreSQL target. It implements
// replicate.ConditionalSink, replicate.IdentifiedSink and
// replicate.HeartbeatSink, and is safe for
// concurrent use (calls are serialized on one connection, reopened after
// a failure).
type Sink struct {
	cfg     Config
	connCfg *pgx.ConnConfig

	mu   sync.Mutex
	conn *pgx.Conn
	sess *session // per-connection state: prepared statements, checked tables

	maxPrepared int // statements a session keeps prepared (defaultMaxPrepared)

	stats statsBox
}

var (
	_ replicate.ConditionalSink = (*Sink)(nil)
	_ replicate.HeartbeatSink   = (*Sink)(nil)
	_ replicate.IdentifiedSink  = (*Sink)(nil)
)

// New returns a Sink for cfg, or an error wrapping ErrConfig that names
// every broken rule. It does not connect.
func New(cfg Config) (*Sink, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cc, err := pgx.ParseConfig(cfg.ConnString)
	if err != nil {
		return nil, fmt.Errorf("%w: ConnString: cannot be parsed", ErrConfig)
	}
	if cfg.IdleTxTimeout > 0 {
		cc.RuntimeParams["idle_in_transaction_session_timeout"] = strconv.FormatInt(max(cfg.IdleTxTimeout.Milliseconds(), 1), 10)
	}
	if cfg.ReplicaRole {
		cc.RuntimeParams["session_replication_role"] = "replica"
	}
	return &Sink{cfg: cfg, connCfg: cc, maxPrepared: defaultMaxPrepared}, nil
}

// where names the target for errors, without secrets.
func (s *Sink) where() string {
	return fmt.Sprintf("database %q on %s:%d", s.connCfg.Database, s.connCfg.Host, s.connCfg.Port)
}

// Close closes the connection.
func (s *Sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drop()
	return nil
}

// drop closes the connection after a failure; the next call reconnects.
func (s *Sink) drop() {
	if s.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = s.conn.Close(ctx)
		cancel()
	}
	s.conn, s.sess = nil, nil
}

// connLocked returns the open connection, connecting if needed.
func (s *Sink) connLocked(ctx context.Context) (*pgx.Conn, error) {
	if s.conn != nil && !s.conn.IsClosed() {
		return s.conn, nil
	}
	s.drop()
	c, err := pgx.ConnectConfig(ctx, s.connCfg.Copy())
	if err != nil {
		return nil, fmt.Errorf("pgsink: connect to %s: %w", s.where(), err)
	}
	s.conn, s.sess = c, newSession(s)
	return c, nil
}

// Setup creates the position table if it does not exist. The mirrored
// tables must exist in the target. The table holds, per stream, the
// position, the highest token admitted and the target's identity (see
// Identity).
func (s *Sink) Setup(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.connLocked(ctx)
	if err != nil {
		return err
	}
	_, err = c.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+s.cfg.PositionTable+` (
		stream text PRIMARY KEY,
		token bigint NOT NULL,
		pos bytea,
		source_time timestamptz,
		heartbeat_at timestamptz,
		heartbeat_pos bytea,
		updated_at timestamptz NOT NULL DEFAULT now(),
		sink_id text,
		stream_key text)`)
	if err != nil {
		s.drop()
		return fmt.Errorf("pgsink: setup: create %s on %s: %w", s.cfg.PositionTable, s.where(), err)
	}
	return nil
}

// Apply applies batch and stores its last position under token t in one
// transaction (see the package doc). A token below the stream's fails with
// fence.ErrStale and writes nothing; an empty batch writes nothing but
// admits t.
func (s *Sink) Apply(ctx context.Context, t fence.Token, batch []replicate.Record) error {
	return s.apply(ctx, t, batch, nil)
}

// ApplyAt is Apply if the stream's stored position equals from (nil: none
// yet), checked by the UPDATE that claims the position row; otherwise it
// applies nothing and fails with replicate.ErrPositionMismatch naming both
// positions (replicate.ConditionalSink).
func (s *Sink) ApplyAt(ctx context.Context, t fence.Token, from replicate.Position, batch []replicate.Record) error {
	if from == nil {
		from = replicate.Position{}
	}
	return s.apply(ctx, t, batch, from)
}

// ApplyHeartbeat stores hb in the stream's row under token t.
func (s *Sink) ApplyHeartbeat(ctx context.Context, t fence.Token, hb replicate.Heartbeat) error {
	return s.run(ctx, t, claim{heartbeat: &hb}, nil)
}

func (s *Sink) apply(ctx context.Context, t fence.Token, batch []replicate.Record, from replicate.Position) error {
	cl := claim{from: from}
	if len(batch) > 0 {
		cl.pos = batch[len(batch)-1].Pos
	}
	return s.run(ctx, t, cl, batch)
}

// run claims the row as cl says and applies batch in one transaction,
// retrying when the row was created concurrently.
func (s *Sink) run(ctx context.Context, t fence.Token, cl claim, batch []replicate.Record) error {
	if t == 0 {
		return fence.ErrNoToken
	}
	if t > math.MaxInt64 {
		return fmt.Errorf("pgsink: token %d does not fit the bigint token column", t)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for attempt := 0; ; attempt++ {
		c, err := s.connLocked(ctx)
		if err != nil {
			return err
		}
		res, err := s.sess.transact(ctx, c, t, cl, batch)
		if err != nil {
			closed := c.PgConn().IsClosed()
			if closed || c.PgConn().TxStatus() != 'I' {
				s.drop() // a connection in an unknown state is not reused
			}
			// A connection that broke while idle (the target restarted,
			// a proxy cut it) fails the next call before its COMMIT, so
			// the server rolled the transaction back: try once more on a
			// new connection.
			broken := closed && !errors.Is(err, errCommitUnknown)
			if attempt == 0 && (broken || pgconn.SafeToRetry(err)) && ctx.Err() == nil {
				s.cfg.Logger.Info("pgsink: reconnecting", "stream", s.cfg.Stream, "err", err)
				continue
			}
			return err
		}
		if res.ok {
			s.noteApplied(res)
			return nil
		}
		// The claim changed no row: find out why.
		if err := s.sess.diagnose(ctx, c, t, cl); err != nil {
			return err
		}
		if attempt >= 3 {
			return fmt.Errorf("pgsink: stream %q: position row keeps changing under token %d", s.cfg.Stream, t)
		}
	}
}

// Position returns the stream's stored position, or nil if nothing was
// applied (replicate.DurableSink).
func (s *Sink) Position(ctx context.Context) (replicate.Position, error) {
	row, _, err := s.Row(ctx)
	if err != nil {
		return nil, err
	}
	if len(row.Pos) == 0 {
		return nil, nil
	}
	return row.Pos, nil
}

// Row is the stream's position row.
type Row struct {
	Token        fence.Token
	Pos          replicate.Position
	SourceTime   time.Time // commit time on the source of the last change applied (zero: none)
	HeartbeatAt  time.Time // the Stream's last heartbeat (zero: none)
	HeartbeatPos replicate.Position
}

// Row reads the stream's position row; ok is false if there is none.
func (s *Sink) Row(ctx context.Context) (row Row, ok bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.connLocked(ctx)
	if err != nil {
		return Row{}, false, err
	}
	var tok int64
	var st, hb *time.Time
	err = c.QueryRow(ctx, `SELECT token, pos, source_time, heartbeat_at, heartbeat_pos FROM `+s.cfg.PositionTable+` WHERE stream = $1`, s.cfg.Stream).
		Scan(&tok, (*[]byte)(&row.Pos), &st, &hb, (*[]byte)(&row.HeartbeatPos))
	if errors.Is(err, pgx.ErrNoRows) {
		return Row{}, false, nil
	}
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			s.drop()
		}
		return Row{}, false, fmt.Errorf("pgsink: stream %q: read position row on %s: %w", s.cfg.Stream, s.where(), err)
	}
	row.Token = fence.Token(tok)
	if st != nil {
		row.SourceTime = *st
	}
	if hb != nil {
		row.HeartbeatAt = *hb
	}
	return row, true, nil
}

// pgErr returns err's PostgreSQL error, if any.
func pgErr(err error) *pgconn.PgError {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe
	}
	return nil
}

// FormatPos prints a position for errors and logs.
func FormatPos(p replicate.Position) string { return pgcdc.FormatPos(p) }
