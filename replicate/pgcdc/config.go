package pgcdc

import (
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"
)

// Defaults for Config fields left zero.
const (
	DefaultStatusInterval      = time.Second
	DefaultProgressInterval    = 10 * time.Second
	DefaultSlotWait            = 30 * time.Second
	DefaultMaxTransactionBytes = 256 << 20
	DefaultBufferBytes         = 64 << 20
	DefaultHeartbeatInterval   = time.Second
	DefaultLoadBatchRows       = 1000
)

// ErrConfig is wrapped by every error about an unusable Config; the
// message names the field and the rule.
var ErrConfig = errors.New("pgcdc: invalid config")

// Config configures a Source. Zero fields take the documented defaults.
type Config struct {
	// ConnString is the source database's pgx connection string, e.g.
	// "postgres://cdc@db:5432/app?sslmode=verify-full&sslrootcert=ca.pem".
	// It may hold a password: it is never logged, and errors name only
	// the host, database and user. Required.
	ConnString string
	// Slot is the logical replication slot (plugin pgoutput) and
	// Publication the publication whose tables are replicated. Both
	// required; plain identifiers (letters, digits, underscores).
	Slot        string
	Publication string

	// CreateSlot lets Open create the slot when it does not exist and the
	// stream starts at the beginning. Without it a missing slot is an
	// error (ErrNoSlot).
	CreateSlot bool
	// InitialLoad copies the published tables, consistently with the
	// slot's start, before streaming, when the stream starts at the
	// beginning (see the package doc). It implies CreateSlot: the slot is
	// (re)created to export the snapshot the copy is read under.
	InitialLoad bool
	// LoadBatchRows is how many rows of the initial load one Next returns
	// at most; 0: DefaultLoadBatchRows.
	LoadBatchRows int

	// SlotWait bounds how long Open waits for the slot to become free,
	// terminating the walsender of a deposed member that still holds it;
	// 0: DefaultSlotWait.
	SlotWait time.Duration
	// StatusInterval is how often the source reports to the server what
	// is durable (and proves it is alive); 0: DefaultStatusInterval. It
	// must stay well below the server's wal_sender_timeout (60s by
	// default).
	StatusInterval time.Duration
	// ProgressInterval is how long the stream may be idle before the
	// source asks the server how far it has read and, if the WAL moved
	// past the last change, emits a progress record so that the slot can
	// release that WAL once a sink stores it; 0: DefaultProgressInterval,
	// negative: never.
	ProgressInterval time.Duration
	// MaxTransactionBytes bounds one source transaction held in memory
	// (it is applied whole); a bigger one stops the stream with
	// ErrTransactionTooLarge. It also bounds (plus 64 KiB) one message
	// the server may send on the replication connection, so that a
	// message's length field cannot make the reader allocate more.
	// 0: DefaultMaxTransactionBytes.
	MaxTransactionBytes int
	// BufferBytes bounds the changes received but not yet returned by
	// Next (a transaction bigger than it is still taken whole); 0:
	// DefaultBufferBytes.
	BufferBytes int

	// HeartbeatTable, if set, is a table (optionally schema-qualified) on
	// the source that the active member updates every HeartbeatInterval:
	// one row per slot, (slot text primary key, beat timestamptz). It
	// must be in the publication (Setup adds it); a sink that knows it
	// measures end-to-end latency from it. 0 HeartbeatInterval:
	// DefaultHeartbeatInterval.
	HeartbeatTable    string
	HeartbeatInterval time.Duration

	Logger *slog.Logger // nil: slog.Default()
}

var (
	identRE     = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)
	qualifiedRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}(\.[a-z_][a-z0-9_]{0,62})?$`)
)

// withDefaults returns c with the zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.SlotWait == 0 {
		c.SlotWait = DefaultSlotWait
	}
	if c.StatusInterval == 0 {
		c.StatusInterval = DefaultStatusInterval
	}
	if c.ProgressInterval == 0 {
		c.ProgressInterval = DefaultProgressInterval
	}
	if c.MaxTransactionBytes == 0 {
		c.MaxTransactionBytes = DefaultMaxTransactionBytes
	}
	if c.BufferBytes == 0 {
		c.BufferBytes = DefaultBufferBytes
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.LoadBatchRows == 0 {
		c.LoadBatchRows = DefaultLoadBatchRows
	}
	if c.InitialLoad {
		c.CreateSlot = true
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// validate reports every broken rule, joined; it does not modify c.
func (c Config) validate() error {
	var errs []error
	bad := func(field, rule string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(rule, args...)))
	}
	if c.ConnString == "" {
		bad("ConnString", "is required (a pgx connection string)")
	} else if _, err := pgx.ParseConfig(c.ConnString); err != nil {
		// The parser's message may quote the string; say only that.
		bad("ConnString", "cannot be parsed as a pgx connection string")
	}
	if !identRE.MatchString(c.Slot) {
		bad("Slot", "must be a lower-case identifier of letters, digits and underscores, not %q", c.Slot)
	}
	if !identRE.MatchString(c.Publication) {
		bad("Publication", "must be a lower-case identifier of letters, digits and underscores, not %q", c.Publication)
	}
	if c.HeartbeatTable != "" && !qualifiedRE.MatchString(c.HeartbeatTable) {
		bad("HeartbeatTable", "must be a lower-case (schema.)identifier, not %q", c.HeartbeatTable)
	}
	for _, d := range []struct {
		field string
		v     time.Duration
	}{{"SlotWait", c.SlotWait}, {"StatusInterval", c.StatusInterval}, {"HeartbeatInterval", c.HeartbeatInterval}} {
		if d.v <= 0 {
			bad(d.field, "must be positive, not %v", d.v)
		}
	}
	if c.StatusInterval > 30*time.Second {
		bad("StatusInterval", "must be at most 30s (the server's wal_sender_timeout is 60s by default), not %v", c.StatusInterval)
	}
	for _, n := range []struct {
		field string
		v     int
	}{{"MaxTransactionBytes", c.MaxTransactionBytes}, {"BufferBytes", c.BufferBytes}, {"LoadBatchRows", c.LoadBatchRows}} {
		if n.v <= 0 {
			bad(n.field, "must be positive, not %d", n.v)
		}
	}
	return errors.Join(errs...)
}
