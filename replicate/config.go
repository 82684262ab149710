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

// ErrConfig is wrapped by every error Stream.Validate returns; the message
// names the field and the rule it broke.
var ErrConfig = errors.New("replicate: invalid stream configuration")

// config is a Stream's settings with the defaults filled in.
type config struct {
	compare     func(a, b Position) int
	maxRecords  int
	maxBytes    int
	maxWait     time.Duration
	policy      policy
	heartbeat   time.Duration // 0: off
	stopTimeout time.Duration
	readAhead   int
	clock       clock.Clock
	log         *slog.Logger
}

// Validate reports whether the Stream's configuration is usable, without
// touching the Source, Sink or Store. The error wraps ErrConfig and names
// the field. Run calls it first.
func (s *Stream) Validate() error {
	_, err := s.config()
	return err
}

func (s *Stream) config() (config, error) {
	bad := func(format string, args ...any) (config, error) {
		return config{}, fmt.Errorf("%w: "+format, append([]any{ErrConfig}, args...)...)
	}
	switch {
	case s.Source == nil:
		return bad("Source is nil")
	case s.Sink == nil:
		return bad("Sink is nil")
	case s.Store == nil:
		return bad("Store is nil")
	}
	if err := storage.ValidateKey(s.Key); err != nil {
		return bad("Key: %v", err)
	}
	c := config{
		compare:     s.Compare,
		maxRecords:  orDefault(s.MaxRecords, DefaultMaxRecords),
		maxBytes:    orDefault(s.MaxBytes, DefaultMaxBytes),
		maxWait:     s.MaxWait,
		stopTimeout: orDefault(s.StopTimeout, DefaultStopTimeout),
		readAhead:   orDefault(s.ReadAhead, DefaultReadAhead),
		clock:       s.Clock,
		log:         s.Logger,
	}
	if c.compare == nil {
		cmp, ok := s.Source.(Comparer)
		if !ok {
			return bad("Compare is nil and the Source (%T) does not implement Comparer", s.Source)
		}
		c.compare = cmp.Compare
	}
	switch {
	case s.MaxRecords < 0:
		return bad("MaxRecords is %d, want > 0 (0 selects %d)", s.MaxRecords, DefaultMaxRecords)
	case s.MaxBytes < 0:
		return bad("MaxBytes is %d, want > 0 (0 selects %d)", s.MaxBytes, DefaultMaxBytes)
	case s.MaxWait < 0:
		return bad("MaxWait is %v, want >= 0", s.MaxWait)
	case s.StopTimeout < 0:
		return bad("StopTimeout is %v, want > 0 (0 selects %v)", s.StopTimeout, DefaultStopTimeout)
	case s.ReadAhead < 0:
		return bad("ReadAhead is %d, want > 0 (0 selects %d)", s.ReadAhead, DefaultReadAhead)
	}
	switch {
	case s.CheckpointRecords < 0:
		c.policy.every = 0
	case s.CheckpointRecords == 0:
		c.policy.every = DefaultCheckpointRecords
	default:
		c.policy.every = s.CheckpointRecords
	}
	switch {
	case s.CheckpointInterval < 0:
		c.policy.interval = 0
	case s.CheckpointInterval == 0:
		c.policy.interval = DefaultCheckpointInterval
	default:
		c.policy.interval = s.CheckpointInterval
	}
	switch {
	case s.HeartbeatInterval < 0:
		c.heartbeat = 0
	case s.HeartbeatInterval == 0:
		c.heartbeat = DefaultHeartbeatInterval
	default:
		c.heartbeat = s.HeartbeatInterval
	}
	if c.maxWait > 0 && c.policy.interval > 0 && c.maxWait >= c.policy.interval {
		return bad("MaxWait %v must be shorter than CheckpointInterval %v", c.maxWait, c.policy.interval)
	}
	if c.clock == nil {
		c.clock = clock.Real()
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	return c, nil
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
