package pgcdc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/hakit/hakit/replicate"
)

var (
	// ErrNoSlot is wrapped by the error for a replication slot that does
	// not exist when the stream resumes (dropped, or never created): the
	// changes since the target's position are gone with it.
	ErrNoSlot = errors.New("pgcdc: replication slot does not exist")
	// ErrNoPublication is wrapped by the error for a publication that
	// does not exist.
	ErrNoPublication = errors.New("pgcdc: publication does not exist")
	// ErrSlotBusy is wrapped by the error for a slot that another
	// walsender still holds after SlotWait, or whose holder this role may
	// not terminate.
	ErrSlotBusy = errors.New("pgcdc: replication slot is in use")
	// ErrSlotAhead is wrapped by the error for a slot whose confirmed
	// flush position is past the position the stream resumes from: the
	// changes in between were confirmed by someone else (another consumer
	// of the slot, or a target restored from an older backup) and cannot
	// be read again.
	ErrSlotAhead = errors.New("pgcdc: replication slot is ahead of the resume position")
	// ErrSlot is wrapped by the error for a slot that exists but cannot
	// serve this source: another plugin, a physical slot, another
	// database.
	ErrSlot = errors.New("pgcdc: replication slot cannot be used")
)

// Source is a replicate.Source reading a PostgreSQL publication through a
// logical replication slot with the pgoutput plugin. See the package doc.
// It is safe for concurrent use; a slot admits one open Cursor at a time.
type Source struct {
	cfg     Config
	connCfg *pgx.ConnConfig
	stats   statsBox
	tap     func(msg []byte) // tests: sees every pgoutput message before it is decoded
}

var (
	_ replicate.Source   = (*Source)(nil)
	_ replicate.Comparer = (*Source)(nil)
)

// New returns a Source for cfg, or an error wrapping ErrConfig naming
// every broken rule. It does not connect.
func New(cfg Config) (*Source, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cc, err := pgx.ParseConfig(cfg.ConnString)
	if err != nil {
		return nil, fmt.Errorf("%w: ConnString: cannot be parsed", ErrConfig)
	}
	return &Source{cfg: cfg, connCfg: cc}, nil
}

// Compare orders this Source's positions (replicate.Comparer).
func (s *Source) Compare(a, b replicate.Position) int { return Compare(a, b) }

// where names the source database for errors, without secrets.
func (s *Source) where() string {
	return fmt.Sprintf("database %q on %s:%d as %q", s.connCfg.Database, s.connCfg.Host, s.connCfg.Port, s.connCfg.User)
}

// connect opens a plain connection to the source.
func (s *Source) connect(ctx context.Context) (*pgx.Conn, error) {
	c, err := pgx.ConnectConfig(ctx, s.connCfg.Copy())
	if err != nil {
		return nil, fmt.Errorf("pgcdc: connect to %s: %w", s.where(), err)
	}
	return c, nil
}

// connectReplication opens a logical replication connection.
func (s *Source) connectReplication(ctx context.Context) (*pgconn.PgConn, error) {
	pc := s.connCfg.Config.Copy()
	pc.RuntimeParams["replication"] = "database"
	pc.RuntimeParams["application_name"] = "hakit-pgcdc-" + s.cfg.Slot
	pc.DialFunc = dialCoalescing
	pc.MaxProtocolMessageBodyLen = maxMessageLen(s.cfg.MaxTransactionBytes)
	c, err := pgconn.ConnectConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("pgcdc: open a replication connection to %s: %w", s.where(), err)
	}
	return c, nil
}

// maxMessageLen bounds one message of the replication stream. A change
// bigger than the transaction bound could not be applied anyway, and
// without a bound a peer's length field makes the reader allocate up to
// the protocol's 1 GiB before a byte of the message arrives.
func maxMessageLen(maxTxBytes int) int {
	const slack = 64 << 10 // the XLogData header, a relation message
	return maxTxBytes + slack
}

// slotInfo is a row of pg_replication_slots.
type slotInfo struct {
	plugin, slotType, database string
	activePID                  *int32
	confirmed                  LSN
}

// slot reads the slot's row; ok is false if it does not exist.
func (s *Source) slot(ctx context.Context, c *pgx.Conn) (si slotInfo, ok bool, err error) {
	var plugin, db *string
	var confirmed *string
	err = c.QueryRow(ctx, `SELECT plugin, slot_type, database, active_pid, confirmed_flush_lsn::text
		FROM pg_replication_slots WHERE slot_name = $1`, s.cfg.Slot).
		Scan(&plugin, &si.slotType, &db, &si.activePID, &confirmed)
	if errors.Is(err, pgx.ErrNoRows) {
		return slotInfo{}, false, nil
	}
	if err != nil {
		return slotInfo{}, false, fmt.Errorf("pgcdc: read slot %q on %s: %w", s.cfg.Slot, s.where(), err)
	}
	if plugin != nil {
		si.plugin = *plugin
	}
	if db != nil {
		si.database = *db
	}
	if confirmed != nil {
		if si.confirmed, err = pglogrepl.ParseLSN(*confirmed); err != nil {
			return slotInfo{}, false, fmt.Errorf("pgcdc: slot %q: confirmed flush %q: %w", s.cfg.Slot, *confirmed, err)
		}
	}
	return si, true, nil
}

// checkPublication fails with ErrNoPublication if the publication is
// missing.
func (s *Source) checkPublication(ctx context.Context, c *pgx.Conn) error {
	var n int
	if err := c.QueryRow(ctx, `SELECT count(*) FROM pg_publication WHERE pubname = $1`, s.cfg.Publication).Scan(&n); err != nil {
		return fmt.Errorf("pgcdc: read publication %q on %s: %w", s.cfg.Publication, s.where(), err)
	}
	if n == 0 {
		return fmt.Errorf("%w: %q on %s: create it (CREATE PUBLICATION %s FOR TABLE ...) or fix Publication",
			ErrNoPublication, s.cfg.Publication, s.where(), s.cfg.Publication)
	}
	return nil
}

// freeSlot waits until no walsender holds the slot, terminating the one
// that does: a deposed member that is frozen, or whose TCP connection is
// half open, still holds it, and a slot admits one consumer. It is called
// only from Open, which a Stream calls only after its term has claimed
// the checkpoint, so a member that was deposed cannot get here past its
// successor's claim. Terminating needs the same role as the holder, or
// membership in pg_signal_backend (not for a superuser's backend).
func (s *Source) freeSlot(ctx context.Context, c *pgx.Conn) (slotInfo, bool, error) {
	deadline := time.Now().Add(s.cfg.SlotWait)
	for attempt := 0; ; attempt++ {
		si, ok, err := s.slot(ctx, c)
		if err != nil || !ok || si.activePID == nil {
			return si, ok, err
		}
		pid := *si.activePID
		if time.Now().After(deadline) {
			return si, ok, fmt.Errorf("%w: slot %q is still held by walsender PID %d after %v", ErrSlotBusy, s.cfg.Slot, pid, s.cfg.SlotWait)
		}
		s.cfg.Logger.Warn("pgcdc: replication slot held by another walsender; terminating it", "slot", s.cfg.Slot, "pid", pid, "attempt", attempt+1)
		err = s.terminateHolder(ctx, c, pid)
		var pgErr *pgconn.PgError
		switch {
		case errors.As(err, &pgErr) && pgErr.Code == "42501":
			return si, ok, fmt.Errorf("%w: slot %q is held by walsender PID %d, which this role may not terminate (it needs to be the holder's role or a member of pg_signal_backend): %w",
				ErrSlotBusy, s.cfg.Slot, pid, err)
		case err != nil && ctx.Err() != nil:
			return si, ok, ctx.Err()
		case err != nil:
			// The backend may have exited between the read and the
			// call; look again.
			s.cfg.Logger.Warn("pgcdc: terminate walsender", "slot", s.cfg.Slot, "pid", pid, "err", err)
		}
		select {
		case <-ctx.Done():
			return si, ok, ctx.Err()
		case <-time.After(min(50*time.Millisecond<<min(attempt, 4), time.Second)):
		}
	}
}

// terminateHolder terminates walsender pid if it still holds the slot.
// The PID was read a moment before, and its backend may have exited and
// the number gone to an unrelated session since: the condition on the
// slot's row, checked in the same statement, keeps that one alive. The
// second argument of pg_terminate_backend waits up to that many
// milliseconds for the backend to exit, so that the slot is free when it
// returns.
func (s *Source) terminateHolder(ctx context.Context, c *pgx.Conn, pid int32) error {
	var done bool
	err := c.QueryRow(ctx, `SELECT pg_terminate_backend(active_pid, 5000) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid = $2`,
		s.cfg.Slot, pid).Scan(&done)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil // released meanwhile: look again
	}
	return err
}

// Setup prepares the source database for this Source: it creates the
// heartbeat table (if HeartbeatTable is set) and the publication if they
// do not exist, and adds tables, and the heartbeat table, to the
// publication. With no tables and no existing publication it creates the
// publication FOR ALL TABLES (which needs a superuser). It does not
// create the slot: Open does, with CreateSlot. Table names are
// (schema.)identifiers; an unqualified one is in schema public.
func (s *Source) Setup(ctx context.Context, tables ...string) error {
	c, err := s.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close(context.WithoutCancel(ctx))
	for _, t := range tables {
		if !qualifiedRE.MatchString(t) {
			return fmt.Errorf("pgcdc: setup: table %q is not a lower-case (schema.)identifier", t)
		}
	}
	if hb := s.cfg.HeartbeatTable; hb != "" {
		if _, err := c.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+hb+` (slot text PRIMARY KEY, beat timestamptz NOT NULL)`); err != nil {
			return fmt.Errorf("pgcdc: setup: create heartbeat table %s: %w", hb, err)
		}
		tables = append(tables, hb)
	}
	var exists bool
	if err := c.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)`, s.cfg.Publication).Scan(&exists); err != nil {
		return fmt.Errorf("pgcdc: setup: read publication %q: %w", s.cfg.Publication, err)
	}
	if !exists {
		q := `CREATE PUBLICATION ` + s.cfg.Publication + ` FOR ALL TABLES`
		if len(tables) > 0 {
			q = `CREATE PUBLICATION ` + s.cfg.Publication + ` FOR TABLE ` + strings.Join(tables, ", ")
		}
		if _, err := c.Exec(ctx, q); err != nil {
			return fmt.Errorf("pgcdc: setup: create publication %q: %w", s.cfg.Publication, err)
		}
		return nil
	}
	for _, t := range tables {
		var in bool
		qualified := t
		if !strings.Contains(t, ".") {
			qualified = "public." + t
		}
		err := c.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND schemaname || '.' || tablename = $2)`,
			s.cfg.Publication, qualified).Scan(&in)
		if err != nil {
			return fmt.Errorf("pgcdc: setup: is %s in publication %q: %w", t, s.cfg.Publication, err)
		}
		if !in {
			if _, err := c.Exec(ctx, `ALTER PUBLICATION `+s.cfg.Publication+` ADD TABLE `+t); err != nil {
				return fmt.Errorf("pgcdc: setup: add %s to publication %q: %w", t, s.cfg.Publication, err)
			}
		}
	}
	return nil
}

// DropSlot drops the slot, terminating a walsender that holds it first.
// It is for tests and for an operator starting over: the WAL the slot
// kept is released, and a stream that resumes afterwards fails with
// ErrNoSlot.
func (s *Source) DropSlot(ctx context.Context) error {
	c, err := s.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close(context.WithoutCancel(ctx))
	if _, ok, err := s.freeSlot(ctx, c); err != nil || !ok {
		return err
	}
	if _, err := c.Exec(ctx, `SELECT pg_drop_replication_slot($1)`, s.cfg.Slot); err != nil {
		return fmt.Errorf("pgcdc: drop slot %q on %s: %w", s.cfg.Slot, s.where(), err)
	}
	return nil
}
