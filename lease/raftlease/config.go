package raftlease

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/hakit/hakit/lease/clock"
	"github.com/hakit/hakit/lease/raftlease/internal/raftid"
)

// The defaults that Start applies to zero Config fields.
const (
	// DefaultTickInterval is the length of one Raft tick.
	DefaultTickInterval = 100 * time.Millisecond
	// DefaultElectionTicks is the election timeout in ticks (1 s).
	DefaultElectionTicks = 10
	// DefaultHeartbeatTicks is the heartbeat interval in ticks.
	DefaultHeartbeatTicks = 1
	// DefaultDriftMargin is how much earlier than its peers' lease a
	// leader fences itself.
	DefaultDriftMargin = 100 * time.Millisecond
	// DefaultSnapshotEntries is how many applied entries trigger a
	// snapshot and log compaction.
	DefaultSnapshotEntries = 10000
	// DefaultCompactionMargin is how many entries before a snapshot stay
	// in the log.
	DefaultCompactionMargin = 1000
	// DefaultMaxValueBytes bounds one stored value.
	DefaultMaxValueBytes = 1 << 20
)

// Config configures one member of a Raft group. The zero value of every
// field except ID, Peers (unless Join) and DataDir selects the documented
// default; Start validates the result and names the field and the rule it
// breaks.
type Config struct {
	// ID is this member's name, unique in the group. It is what
	// lease.Leader.ID reports. Raft numbers members with uint64: the
	// number of a member is RaftID(ID), the first 8 bytes (big endian) of
	// SHA-256 over a fixed prefix and the ID, with 0 mapped to 1. The
	// mapping is the same on every member and every release; Start and
	// AddMember refuse two IDs that map to the same number.
	ID string
	// Peers maps the ID of every initial voting member, this one included,
	// to the address its transport listens on (host:port for the TCP
	// transport). It is used to bootstrap a new group and to find peers
	// after a restart; once a group exists its membership lives in the
	// replicated log (see AddMember and RemoveMember) and a member's entry
	// here only supplies its address if the log does not know it.
	Peers map[string]string
	// Join starts a member that was added to a running group with
	// AddMember: it bootstraps nothing and learns the membership from the
	// leader. Peers must still name at least one reachable member.
	Join bool
	// DataDir holds the write-ahead log and snapshots. Required.
	DataDir string

	// TickInterval is the length of one Raft tick. Default 100 ms.
	TickInterval time.Duration
	// ElectionTicks is the Raft election timeout in ticks: a follower
	// that hears nothing from a leader for a random 1x to 2x this many
	// ticks starts an election. Default 10. Must exceed HeartbeatTicks
	// and be at least 3.
	ElectionTicks int
	// HeartbeatTicks is how often, in ticks, the leader sends heartbeats.
	// Default 1.
	HeartbeatTicks int
	// DriftMargin is how much shorter the leader's self-fence deadline is
	// than the time the other members wait before they may elect a new
	// leader: it absorbs the difference between members' clock rates over
	// one election timeout. Default 100 ms; it must be below
	// (ElectionTicks-1) x TickInterval.
	DriftMargin time.Duration

	// SnapshotEntries is how many applied entries trigger a snapshot of
	// the store and a compaction of the log. Default 10000.
	SnapshotEntries uint64
	// CompactionMargin is how many entries before a snapshot stay in the
	// log so that a slightly lagging follower catches up from the log
	// rather than by snapshot. Default 1000.
	CompactionMargin uint64
	// MaxValueBytes bounds the size of one stored value. Default 1 MiB.
	MaxValueBytes int

	// TLS, if set, secures the default TCP transport: the same config is
	// used to accept and to dial. For mutual TLS set Certificates,
	// RootCAs, ClientCAs and ClientAuth = tls.RequireAndVerifyClientCert.
	// Ignored when Transport is set.
	TLS *tls.Config
	// Transport carries Raft messages. Nil selects a TCP transport that
	// listens on Peers[ID]; to listen on another address (all
	// interfaces, behind NAT) pass one made with NewTCPTransport. Tests
	// and simulations plug in their own.
	Transport Transport
	// Clock drives ticks and measures the self-fence deadline. Nil is the
	// real clock.
	Clock clock.Clock
	// Logger receives the group's logs. Nil discards them.
	Logger *slog.Logger
}

// ErrConfig is wrapped by every validation error of Start.
var ErrConfig = errors.New("raftlease: invalid config")

func configError(field, rule string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(rule, args...))
}

// electionTimeout is the minimum time after which a member that heard from
// the leader may vote for another: a follower resets its election counter
// when a message arrives, which may be just before its next tick, so only
// ElectionTicks-1 full ticks are certain to pass.
func (c *Config) electionTimeout() time.Duration {
	return time.Duration(c.ElectionTicks-1) * c.TickInterval
}

// fenceWindow is how long after the last quorum acknowledgement the leader
// still trusts its term.
func (c *Config) fenceWindow() time.Duration { return c.electionTimeout() - c.DriftMargin }

func (c Config) withDefaults() Config {
	if c.TickInterval == 0 {
		c.TickInterval = DefaultTickInterval
	}
	if c.ElectionTicks == 0 {
		c.ElectionTicks = DefaultElectionTicks
	}
	if c.HeartbeatTicks == 0 {
		c.HeartbeatTicks = DefaultHeartbeatTicks
	}
	if c.DriftMargin == 0 {
		c.DriftMargin = DefaultDriftMargin
		if max := c.electionTimeout() / 2; c.DriftMargin > max && max > 0 {
			// A short election timeout (tests, sub-second failover)
			// keeps half of it as the fence window by default.
			c.DriftMargin = max
		}
	}
	if c.SnapshotEntries == 0 {
		c.SnapshotEntries = DefaultSnapshotEntries
	}
	if c.CompactionMargin == 0 {
		c.CompactionMargin = DefaultCompactionMargin
	}
	if c.MaxValueBytes == 0 {
		c.MaxValueBytes = DefaultMaxValueBytes
	}
	if c.Clock == nil {
		c.Clock = clock.Real()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

func (c *Config) validate() error {
	if c.ID == "" {
		return configError("ID", "must not be empty")
	}
	if len(c.ID) > maxMemberIDLen {
		return configError("ID", "%d bytes exceeds %d", len(c.ID), maxMemberIDLen)
	}
	if !c.Join {
		if _, ok := c.Peers[c.ID]; !ok {
			return configError("Peers", "must include this member's ID %q", c.ID)
		}
	} else if len(c.Peers) == 0 {
		return configError("Peers", "a joining member needs at least one peer")
	}
	if _, err := raftIDs(c.Peers); err != nil {
		return err
	}
	for id, addr := range c.Peers {
		if addr == "" && c.Transport == nil {
			return configError("Peers", "member %q has an empty address", id)
		}
		if len(id) > maxMemberIDLen || len(addr) > maxAddrLen {
			return configError("Peers", "member %q: ID or address too long", id)
		}
	}
	if c.DataDir == "" {
		return configError("DataDir", "must not be empty")
	}
	switch {
	case c.TickInterval < time.Millisecond:
		return configError("TickInterval", "%v is below 1ms", c.TickInterval)
	case c.HeartbeatTicks < 1:
		return configError("HeartbeatTicks", "%d is below 1", c.HeartbeatTicks)
	case c.ElectionTicks < 3:
		return configError("ElectionTicks", "%d is below 3", c.ElectionTicks)
	case c.ElectionTicks <= c.HeartbeatTicks:
		return configError("ElectionTicks", "%d must exceed HeartbeatTicks %d", c.ElectionTicks, c.HeartbeatTicks)
	case c.DriftMargin < 0:
		return configError("DriftMargin", "%v is negative", c.DriftMargin)
	case c.DriftMargin >= c.electionTimeout():
		return configError("DriftMargin", "%v must be below (ElectionTicks-1) x TickInterval = %v", c.DriftMargin, c.electionTimeout())
	case c.CompactionMargin > c.SnapshotEntries*100:
		return configError("CompactionMargin", "%d is more than 100x SnapshotEntries %d", c.CompactionMargin, c.SnapshotEntries)
	case c.MaxValueBytes < 0 || c.MaxValueBytes > maxValueLimit:
		return configError("MaxValueBytes", "%d is outside [0, %d]", c.MaxValueBytes, maxValueLimit)
	}
	return nil
}

const (
	maxMemberIDLen = 256
	maxAddrLen     = 1024
	maxValueLimit  = 16 << 20
)

// RaftID returns the Raft member number of the member named id: the first
// 8 bytes, big endian, of SHA-256("hakit/raftlease/member\x00" + id), with
// 0 (Raft's "nobody") mapped to 1. A simulated Transport uses it to route
// messages by their To field.
func RaftID(id string) uint64 { return raftid.Of(id) }

// raftIDs maps every peer to its Raft number and refuses collisions.
func raftIDs(peers map[string]string) (map[uint64]string, error) {
	ids := make([]string, 0, len(peers))
	for id := range peers {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	out := make(map[uint64]string, len(peers))
	for _, id := range ids {
		if id == "" {
			return nil, configError("Peers", "a member ID is empty")
		}
		n := RaftID(id)
		if other, ok := out[n]; ok {
			return nil, configError("Peers", "members %q and %q map to the same Raft ID %x", other, id, n)
		}
		out[n] = id
	}
	return out, nil
}
