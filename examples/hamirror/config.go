package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// ErrConfig is wrapped by every configuration error: a file that is not
// valid JSON, an unknown field, a value of the wrong type, or a value that
// breaks a rule. The message names the field (as a JSON path) and the rule.
var ErrConfig = errors.New("hamirror: invalid config")

// Defaults of the fields left empty.
const (
	DefaultBackend       = "raft"
	DefaultCheckpointKey = "hamirror/checkpoint"
	DefaultEtcdPrefix    = "hamirror/"
	DefaultEtcdTTL       = 5 * time.Second
	DefaultLogFormat     = "json"
	DefaultLogLevel      = "info"
	// EnvAdminToken is read when admin_token_file is not set (daemon and
	// operator commands alike).
	EnvAdminToken = "HAMIRROR_ADMIN_TOKEN"
)

// Config is the daemon's configuration, read from a JSON file and
// overridden by command-line flags. Durations are strings in Go's
// notation ("250ms", "5s"). Unknown fields are errors, so a typo never
// silently falls back to a default. Validate names every field that
// breaks its rule.
type Config struct {
	// ID is this member's name; it must be a key of Members.
	ID string `json:"id"`
	// Listen is the host:port of the HTTP API (the Node's endpoints,
	// /metrics, /replication and /lb).
	Listen string `json:"listen"`
	// Members lists every member of the cluster, this one included.
	Members map[string]Member `json:"members"`
	// AdminTokenFile holds the bearer token of the admin POSTs; without
	// it the token comes from $HAMIRROR_ADMIN_TOKEN, and without either
	// every admin request is refused.
	AdminTokenFile string `json:"admin_token_file"`
	// TLS, if set, serves the HTTP API over TLS; its CA verifies the other
	// members' APIs when a request is forwarded to the active member.
	TLS *TLSFiles `json:"tls"`
	// Log selects the log format and level.
	Log LogConfig `json:"log"`

	Source SourceConfig `json:"source"`
	Sink   SinkConfig   `json:"sink"`
	Stream StreamConfig `json:"stream"`

	// Backend is "raft" (the default: an embedded Raft group of the
	// members, no external service) or "etcd".
	Backend string     `json:"backend"`
	Raft    RaftConfig `json:"raft"`
	Etcd    EtcdConfig `json:"etcd"`

	HA        HAConfig        `json:"ha"`
	Switchers SwitchersConfig `json:"switchers"`
}

// Member is one member's addresses.
type Member struct {
	// API is the base URL of the member's HTTP API, e.g.
	// "https://10.0.0.1:8443". Required.
	API string `json:"api"`
	// Raft is the host:port the member's Raft transport listens on.
	// Required with backend "raft".
	Raft string `json:"raft"`
}

// TLSFiles names PEM files. Which ones are required depends on the use:
// see Validate.
type TLSFiles struct {
	Cert string `json:"cert"` // certificate chain
	Key  string `json:"key"`  // its private key
	CA   string `json:"ca"`   // CA bundle that verifies the peer
}

// LogConfig configures the structured logs on standard error.
type LogConfig struct {
	Format string `json:"format"` // "json" (default) or "text"
	Level  string `json:"level"`  // "debug", "info" (default), "warn", "error"
}

// The source and sink kinds.
const (
	SourceFilelog  = "filelog"  // an append-only file log (replicate/filelog)
	SourcePostgres = "postgres" // a PostgreSQL publication (replicate/pgcdc)
	SinkFile       = "file"     // a transactional file (replicate/filesink)
	SinkSQL        = "sql"      // records into a PostgreSQL table (replicate/sqlsink)
	SinkPostgres   = "postgres" // PostgreSQL row changes applied to mirrored tables (replicate/pgsink)
)

// SourceConfig is what is replicated: a file log (kind "filelog", the
// default: Dir) or a PostgreSQL publication (kind "postgres": Postgres).
type SourceConfig struct {
	Kind         string   `json:"kind"`          // "filelog" (default) or "postgres"
	Dir          string   `json:"dir"`           // the log directory; required with filelog
	PollInterval Duration `json:"poll_interval"` // 0: the filelog default

	Postgres *PGSourceConfig `json:"postgres"` // required with kind "postgres"
}

// PGSourceConfig is the PostgreSQL change data capture source
// (replicate/pgcdc): a logical replication slot on a publication.
type PGSourceConfig struct {
	// DSNFile holds the pgx connection string of the source database,
	// e.g. "postgres://cdc@db:5432/app?sslmode=verify-full"; it may hold
	// a password, so it lives in a file and is never logged.
	DSNFile     string `json:"dsn_file"`
	Slot        string `json:"slot"`        // the logical replication slot; required
	Publication string `json:"publication"` // required
	// CreateSlot creates the slot if it is missing when the stream
	// starts at the beginning; InitialLoad copies the published tables
	// first (it implies create_slot).
	CreateSlot  bool `json:"create_slot"`
	InitialLoad bool `json:"initial_load"`
	// HeartbeatTable is a source table the active member updates every
	// HeartbeatInterval (0: 1s), in the publication: end-to-end latency.
	HeartbeatTable    string   `json:"heartbeat_table"`
	HeartbeatInterval Duration `json:"heartbeat_interval"`
	SlotWait          Duration `json:"slot_wait"`             // 0: pgcdc's default (30s)
	MaxTransaction    int      `json:"max_transaction_bytes"` // 0: pgcdc's default (256 MiB)
}

// SinkConfig is the target: kind "file" (Path), "sql" (Postgres: records
// into a table) or "postgres" (Postgres: the row changes of a postgres
// source applied to mirrored tables). Without kind it is "file" if Path is
// set and "sql" if Postgres is.
type SinkConfig struct {
	Kind     string          `json:"kind"`
	Path     string          `json:"path"`     // the file sink's data file
	Postgres *PostgresConfig `json:"postgres"` // kinds "sql" and "postgres"
}

// PostgresConfig is a PostgreSQL sink: each batch, its position and the
// writer's token in one transaction.
type PostgresConfig struct {
	// DSNFile holds the pgx connection string, e.g.
	// "postgres://hamirror@db:5432/target?sslmode=verify-full"; it may
	// hold a password, so it lives in a file and is never logged.
	DSNFile       string `json:"dsn_file"`
	Stream        string `json:"stream"`         // row in the position table; default "hamirror"
	PositionTable string `json:"position_table"` // default sqlsink's or pgsink's
	RecordTable   string `json:"record_table"`   // kind "sql" only; default sqlsink's
	// HeartbeatTable (kind "postgres" only) is the source's heartbeat
	// table as it arrives, schema-qualified ("public.hakit_heartbeat"):
	// its changes measure end-to-end latency.
	HeartbeatTable string `json:"heartbeat_table"`
}

// StreamConfig tunes the replicate.Stream; zero values take its defaults.
type StreamConfig struct {
	CheckpointKey      string   `json:"checkpoint_key"`
	MaxRecords         int      `json:"max_records"`
	CheckpointRecords  int      `json:"checkpoint_records"`
	CheckpointInterval Duration `json:"checkpoint_interval"`
	HeartbeatInterval  Duration `json:"heartbeat_interval"`
}

// RaftConfig configures the embedded Raft group.
type RaftConfig struct {
	DataDir       string    `json:"data_dir"`       // required with backend "raft"
	TickInterval  Duration  `json:"tick_interval"`  // 0: 100ms
	ElectionTicks int       `json:"election_ticks"` // 0: 10
	DriftMargin   Duration  `json:"drift_margin"`   // 0: 100ms
	TLS           *TLSFiles `json:"tls"`            // mutual TLS: cert, key and ca all required
	// Insecure runs the members over plain TCP, without tls: trusted,
	// isolated networks and tests only (anyone who reaches a member's
	// Raft port can speak as any member). A group of more than one
	// member needs tls or insecure.
	Insecure bool `json:"insecure"`
}

// EtcdConfig configures the etcd backend.
type EtcdConfig struct {
	Endpoints   []string  `json:"endpoints"`    // required with backend "etcd"
	Prefix      string    `json:"prefix"`       // default "hamirror/"
	TTL         Duration  `json:"ttl"`          // whole seconds; default 5s
	DialTimeout Duration  `json:"dial_timeout"` // default 5s
	TLS         *TLSFiles `json:"tls"`          // ca required; cert and key together
}

// HAConfig tunes the Node.
type HAConfig struct {
	HoldOff         Duration      `json:"hold_off"`
	StopTimeout     Duration      `json:"stop_timeout"`
	PromoteDelay    Duration      `json:"promote_delay"`
	RequireApproval bool          `json:"require_approval"`
	Checks          []CheckConfig `json:"checks"`
}

// CheckConfig is one health check gating this member: exactly one of TCP
// (a dial check) and PIDFile (a process check).
type CheckConfig struct {
	Name     string   `json:"name"`
	TCP      string   `json:"tcp"`
	PIDFile  string   `json:"pid_file"`
	Interval Duration `json:"interval"`
	Rise     int      `json:"rise"`
	Fall     int      `json:"fall"`
}

// SwitchersConfig lists the switchers besides the /lb health endpoint,
// which is always on. They are promoted in the order exec, rfc2136, vip
// and demoted in reverse.
type SwitchersConfig struct {
	Exec    *ExecConfig    `json:"exec"`
	RFC2136 *RFC2136Config `json:"rfc2136"`
	VIP     *VIPConfig     `json:"vip"`
}

// ExecConfig runs hook commands (argument vectors, not shell strings).
// A hook's environment is PATH, HAKIT_TOKEN, HAKIT_ROLE, HAKIT_MEMBER and
// what Env lists ("NAME=value", or "NAME" to pass the daemon's value
// on): never the admin token or anything else of the daemon's.
type ExecConfig struct {
	Promote [][]string `json:"promote"`
	Demote  [][]string `json:"demote"`
	Timeout Duration   `json:"timeout"`
	Env     []string   `json:"env"`
}

// RFC2136Config points a DNS name at the active member.
type RFC2136Config struct {
	Server     string   `json:"server"`
	Zone       string   `json:"zone"`
	Name       string   `json:"name"`
	Type       string   `json:"type"`
	Targets    []string `json:"targets"`
	TTL        uint32   `json:"ttl"`
	KeyName    string   `json:"key_name"`
	SecretFile string   `json:"secret_file"` // the TSIG secret, base64, never logged
	Algorithm  string   `json:"algorithm"`
}

// VIPConfig floats an address to the active member (Linux only).
type VIPConfig struct {
	Interface string `json:"interface"`
	Address   string `json:"address"` // with prefix length, e.g. "192.0.2.10/24"
}

// Duration is a time.Duration written as a string ("1.5s") in JSON.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// UnmarshalJSON accepts a duration string; a bare number is refused,
// because its unit would be a guess.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration must be a string such as \"5s\", not %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration in Go's notation.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// ParseConfig decodes a JSON configuration. It rejects unknown fields,
// wrong types and trailing data, naming the field; it does not apply
// defaults or validate (see Validate).
func ParseConfig(r io.Reader) (*Config, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, describeJSONError(err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: data after the configuration object", ErrConfig)
	}
	return &c, nil
}

// LoadConfig reads and parses the file at path.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	c, err := ParseConfig(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	return c, nil
}

// describeJSONError turns the decoder's errors into ones that name the
// field by its JSON path.
func describeJSONError(err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		return fmt.Errorf("%w: %s: must be a %s, not a JSON %s", ErrConfig, te.Field, te.Type, te.Value)
	case errors.As(err, &se):
		return fmt.Errorf("%w: not valid JSON at byte %d: %v", ErrConfig, se.Offset, err)
	case errors.Is(err, io.EOF):
		return fmt.Errorf("%w: empty file", ErrConfig)
	}
	msg := err.Error()
	if f, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return fmt.Errorf("%w: unknown field %s", ErrConfig, f)
	}
	// Errors of Duration.UnmarshalJSON arrive wrapped with the field path.
	return fmt.Errorf("%w: %s", ErrConfig, strings.TrimPrefix(msg, "json: "))
}

// applyDefaults fills the empty fields that have defaults.
func (c *Config) applyDefaults() {
	if c.Backend == "" {
		c.Backend = DefaultBackend
	}
	if c.Stream.CheckpointKey == "" {
		c.Stream.CheckpointKey = DefaultCheckpointKey
	}
	if c.Etcd.Prefix == "" {
		c.Etcd.Prefix = DefaultEtcdPrefix
	}
	if c.Etcd.TTL == 0 {
		c.Etcd.TTL = Duration(DefaultEtcdTTL)
	}
	if c.Etcd.DialTimeout == 0 {
		c.Etcd.DialTimeout = Duration(5 * time.Second)
	}
	if p := c.Sink.Postgres; p != nil && p.Stream == "" {
		p.Stream = DefaultSQLStream
	}
	if c.Source.Kind == "" {
		c.Source.Kind = SourceFilelog
	}
	if c.Sink.Kind == "" {
		c.Sink.Kind = SinkFile
		if c.Sink.Postgres != nil {
			c.Sink.Kind = SinkSQL
		}
	}
	if c.Log.Format == "" {
		c.Log.Format = DefaultLogFormat
	}
	if c.Log.Level == "" {
		c.Log.Level = DefaultLogLevel
	}
}

// adminToken returns the admin bearer token: the file's first line, or
// the environment variable. An empty result disables the admin POSTs.
func adminToken(file string) (string, error) {
	if file == "" {
		return os.Getenv(EnvAdminToken), nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%w: admin_token_file: %v", ErrConfig, err)
	}
	tok, _, _ := strings.Cut(string(b), "\n")
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return "", fmt.Errorf("%w: admin_token_file: %s is empty", ErrConfig, file)
	}
	return tok, nil
}
