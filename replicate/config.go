package replicate

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hakit/hakit/lease/clock"
	"github.com/hakit/hakit/storage"
)

// Defaults for the Stream fields left at zero.
const (
	DefaultMaxRecords         = 1000
	DefaultMaxBytes           = 4 << 20
	DefaultCheckpointRecords  = 10000
	DefaultCheckpointInterval = time.Second
	DefaultHeartbeatInterval  = time.Second
	DefaultStopTimeout        = 5 * time.Second
	DefaultReadAhead          = 4
)

// ErrConfig is wrapped by every error Stream.Validate (and so Run)
// returns for a Stream it refuses. Each message reads "replicate: invalid
// config: Field: rule".
var ErrConfig = errors.New("replicate: invalid config")

// config is a Stream's settings: a copy of its fields, then (withDefaults)
// with every default filled in and the negative "off" values turned into
// zero.
type config struct {
	source  Source
	sink    Sink
	store   storage.Store
	key     string
	compare func(a, b Position) int

	maxRecords         int
	maxBytes           int
	maxWait            time.Duration
	checkpointRecords  int
	checkpointInterval time.Duration
	heartbeat          time.Duration // 0: off
	stopTimeout        time.Duration
	readAhead          int
	clock              clock.Clock
	log                *slog.Logger
}

// policy is the checkpoint policy of a config with defaults filled in.
func (c config) policy() policy {
	return policy{every: c.checkpointRecords, interval: c.checkpointInterval}
}

// Validate reports whether the Stream's configuration is usable, without
// touching the Source, Sink or Store: it fills in the defaults and then
// checks every rule. The error joins one error per broken rule, each
// wrapping ErrConfig and naming the field. Run calls it first.
func (s *Stream) Validate() error {
	_, err := s.config()
	return err
}

func (s *Stream) config() (config, error) {
	c := config{
		source: s.Source, sink: s.Sink, store: s.Store, key: s.Key, compare: s.Compare,
		maxRecords: s.MaxRecords, maxBytes: s.MaxBytes, maxWait: s.MaxWait,
		checkpointRecords: s.CheckpointRecords, checkpointInterval: s.CheckpointInterval,
		heartbeat: s.HeartbeatInterval, stopTimeout: s.StopTimeout, readAhead: s.ReadAhead,
		clock: s.Clock, log: s.Logger,
	}
	c = c.withDefaults()
	if err := c.validate(); err != nil {
		return config{}, err
	}
	return c, nil
}

// withDefaults fills in the zero fields and turns the negative values that
// mean "off" (CheckpointRecords, CheckpointInterval, HeartbeatInterval)
// into zero. Negative values of the other fields are left for validate.
func (c config) withDefaults() config {
	c.maxRecords = orDefault(c.maxRecords, DefaultMaxRecords)
	c.maxBytes = orDefault(c.maxBytes, DefaultMaxBytes)
	c.stopTimeout = orDefault(c.stopTimeout, DefaultStopTimeout)
	c.readAhead = orDefault(c.readAhead, DefaultReadAhead)
	c.checkpointRecords = max(0, orDefault(c.checkpointRecords, DefaultCheckpointRecords))
	c.checkpointInterval = max(0, orDefault(c.checkpointInterval, DefaultCheckpointInterval))
	c.heartbeat = max(0, orDefault(c.heartbeat, DefaultHeartbeatInterval))
	if c.compare == nil {
		if cmp, ok := c.source.(Comparer); ok {
			c.compare = cmp.Compare
		}
	}
	if c.clock == nil {
		c.clock = clock.Real()
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	return c
}

// validate reports every rule c breaks, joined; it changes nothing.
func (c config) validate() error {
	var errs []error
	bad := func(field, rule string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(rule, args...)))
	}
	if c.source == nil {
		bad("Source", "is required")
	}
	if c.sink == nil {
		bad("Sink", "is required")
	}
	if c.store == nil {
		bad("Store", "is required")
	}
	if err := storage.ValidateKey(c.key); err != nil {
		bad("Key", "%v", err)
	}
	if c.compare == nil && c.source != nil {
		bad("Compare", "is nil and the Source (%T) does not implement Comparer", c.source)
	}
	if c.maxRecords < 0 {
		bad("MaxRecords", "must be positive (0 selects %d), got %d", DefaultMaxRecords, c.maxRecords)
	}
	if c.maxBytes < 0 {
		bad("MaxBytes", "must be positive (0 selects %d), got %d", DefaultMaxBytes, c.maxBytes)
	}
	if c.maxWait < 0 {
		bad("MaxWait", "must not be negative, got %v", c.maxWait)
	}
	if c.maxWait > 0 && c.checkpointInterval > 0 && c.maxWait >= c.checkpointInterval {
		bad("MaxWait", "%v must be shorter than CheckpointInterval %v", c.maxWait, c.checkpointInterval)
	}
	if c.stopTimeout < 0 {
		bad("StopTimeout", "must be positive (0 selects %v), got %v", DefaultStopTimeout, c.stopTimeout)
	}
	if c.readAhead < 0 {
		bad("ReadAhead", "must be positive (0 selects %d), got %d", DefaultReadAhead, c.readAhead)
	}
	return errors.Join(errs...)
}

func orDefault[T int | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// policy is the checkpoint policy as a pure decision: a checkpoint is due
// once every records have been applied since the last one, or interval has
// passed since it, whichever comes first. A zero field disables that
// trigger; with both zero, checkpoints are written only when a Run stops.
type policy struct {
	every    int
	interval time.Duration
}

// due reports whether a checkpoint is due, given the records applied and
// the time elapsed since the last checkpoint (or since the Run started).
// Nothing is due when no record was applied: an unchanged position is
// never rewritten.
func (p policy) due(records int, elapsed time.Duration) bool {
	if records <= 0 {
		return false
	}
	return (p.every > 0 && records >= p.every) || (p.interval > 0 && elapsed >= p.interval)
}
