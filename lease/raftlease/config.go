package raftlease

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hakit/hakit/lease/clock"
	"github.com/hakit/hakit/lease/raftlease/internal/raftid"
	"github.com/hakit/hakit/lease/raftlease/internal/tcp"
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
	DefaultCompactionMargin = 500
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
	// Join says this member must never bootstrap a new group: it was
	// added to a running group with AddMember and learns the membership
	// from the leader. A member with an empty data directory asks its
	// peers before it bootstraps anything (see the package doc), so Join
	// matters only where the peers it lists could all be new as well.
	// Peers must name at least one reachable member besides this one.
	Join bool
	// DataDir holds the write-ahead log and snapshots. Required.
	DataDir string
	// APIAddr is the address of this member's API (ha.Node's Handler) as
	// the other members should reach it: an http or https URL, or
	// host:port for http. It is carried in the holder record, so it is
	// what lease.Leader.Addr reports while this member holds the lease,
	// and where a standby's ha.Node forwards operator commands. Empty
	// means none: Leader.Addr is then empty, and forwarding fails with an
	// error naming this field. (Peers holds the Raft transport's
	// addresses, which are not the API.) At most 1024 bytes.
	APIAddr string

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
	// the store and a compaction of the log. Default 10000. A snapshot is
	// taken sooner once the entries applied since the last one hold a
	// quarter of the store's bytes (and 64 KiB at least), so that the log
	// held in memory stays small next to the store.
	SnapshotEntries uint64
	// CompactionMargin is how many entries before a snapshot stay in the
	// log so that a slightly lagging follower catches up from the log
	// rather than by snapshot. Default 500: they are held in memory, and
	// the store they would spare sending is small.
	CompactionMargin uint64
	// MaxValueBytes bounds the size of one stored value. Default 1 MiB.
	MaxValueBytes int

	// TLS secures the default TCP transport with mutual TLS that binds
	// every link to a member: set Certificates (this member's certificate,
	// naming it as PeerIdentity reads) and RootCAs (the CA that signs
	// member certificates, which should sign nothing else); see
	// TCPConfig.TLS for the checks. A group of more than one member
	// needs TLS or Insecure. Must be nil when Transport is set (configure
	// that transport instead).
	TLS *tls.Config
	// Insecure lets the default TCP transport run a group of more than
	// one member over plain TCP: trusted, isolated networks and tests
	// only. Anyone who can reach a member's port can then speak Raft as
	// any member: end its term, crash nothing but confuse everything.
	Insecure bool
	// PeerIdentity returns the member ID a verified peer certificate
	// names. Nil is raftcert.MemberID: the certificate's one URI SAN
	// hakit://member/<ID>; its CN and DNS names are not read.
	PeerIdentity func(cert *x509.Certificate) (id string, err error)
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
func (c Config) electionTimeout() time.Duration {
	return time.Duration(c.ElectionTicks-1) * c.TickInterval
}

// fenceWindow is how long after the last quorum acknowledgement the leader
// still trusts its term.
func (c Config) fenceWindow() time.Duration { return c.electionTimeout() - c.DriftMargin }

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

// validate reports every rule c breaks, joined; nil if none. It does not
// change c.
func (c Config) validate() error {
	var errs []error
	bad := func(field, rule string, args ...any) { errs = append(errs, configError(field, rule, args...)) }
	switch {
	case c.ID == "":
		bad("ID", "must not be empty")
	case len(c.ID) > maxMemberIDLen:
		bad("ID", "%d bytes exceeds %d", len(c.ID), maxMemberIDLen)
	}
	errs = append(errs, c.peerProblems()...)
	if c.DataDir == "" {
		bad("DataDir", "must not be empty")
	}
	errs = append(errs, c.timingProblems()...)
	if c.CompactionMargin > c.SnapshotEntries*100 {
		bad("CompactionMargin", "%d is more than 100x SnapshotEntries %d", c.CompactionMargin, c.SnapshotEntries)
	}
	if c.MaxValueBytes < 0 || c.MaxValueBytes > maxValueLimit {
		bad("MaxValueBytes", "%d is outside [0, %d]", c.MaxValueBytes, maxValueLimit)
	}
	if err := checkAPIAddr(c.APIAddr); err != nil {
		bad("APIAddr", "%v", err)
	}
	errs = append(errs, c.securityProblems()...)
	return errors.Join(errs...)
}

func (c Config) peerProblems() []error {
	var errs []error
	bad := func(field, rule string, args ...any) { errs = append(errs, configError(field, rule, args...)) }
	if !c.Join {
		if _, ok := c.Peers[c.ID]; !ok && c.ID != "" {
			bad("Peers", "must include this member's ID %q", c.ID)
		}
	} else if _, self := c.Peers[c.ID]; len(c.Peers) == 0 || (len(c.Peers) == 1 && self) {
		bad("Peers", "a joining member needs at least one peer besides itself")
	} else if _, ok := c.Peers[c.ID]; !ok && c.Transport == nil {
		bad("Peers", "must include this member's ID %q: the default transport listens on that address", c.ID)
	}
	if _, err := raftIDs(c.Peers); err != nil {
		errs = append(errs, err)
	}
	for _, id := range slices.Sorted(maps.Keys(c.Peers)) {
		addr := c.Peers[id]
		if addr == "" && c.Transport == nil {
			bad("Peers", "member %q has an empty address", id)
		}
		if len(id) > maxMemberIDLen || len(addr) > maxAddrLen {
			bad("Peers", "member %q: ID or address too long", id)
		}
	}
	return errs
}

func (c Config) timingProblems() []error {
	var errs []error
	bad := func(field, rule string, args ...any) { errs = append(errs, configError(field, rule, args...)) }
	if c.TickInterval < time.Millisecond {
		bad("TickInterval", "%v is below 1ms", c.TickInterval)
	}
	if c.HeartbeatTicks < 1 {
		bad("HeartbeatTicks", "%d is below 1", c.HeartbeatTicks)
	}
	switch {
	case c.ElectionTicks < 3:
		bad("ElectionTicks", "%d is below 3", c.ElectionTicks)
	case c.ElectionTicks <= c.HeartbeatTicks:
		bad("ElectionTicks", "%d must exceed HeartbeatTicks %d", c.ElectionTicks, c.HeartbeatTicks)
	}
	switch {
	case c.DriftMargin < 0:
		bad("DriftMargin", "%v is negative", c.DriftMargin)
	case c.ElectionTicks >= 3 && c.DriftMargin >= c.electionTimeout():
		bad("DriftMargin", "%v must be below (ElectionTicks-1) x TickInterval = %v", c.DriftMargin, c.electionTimeout())
	}
	return errs
}

// securityProblems: plain TCP between the members of a group is an
// explicit opt-in.
func (c Config) securityProblems() []error {
	var errs []error
	bad := func(field, rule string, args ...any) { errs = append(errs, configError(field, rule, args...)) }
	if c.Transport != nil {
		if c.TLS != nil || c.Insecure || c.PeerIdentity != nil {
			bad("TLS", "TLS, Insecure and PeerIdentity configure the default transport; with Transport set, configure that transport")
		}
		return errs
	}
	alone := !c.Join && len(c.Peers) == 1
	switch {
	case c.TLS == nil && !c.Insecure && !alone:
		bad("TLS", "plain TCP between the members of a group is refused: set TLS (mutual TLS with a certificate per member "+
			"naming hakit://member/<ID>, see package raftcert) or, on a trusted, isolated network or in tests only, Insecure")
	case c.TLS != nil && c.Insecure:
		bad("Insecure", "must not be set together with TLS")
	case c.TLS != nil:
		for _, p := range c.tcpConfig().Problems() {
			if p.Field != "Addr" { // Peers[ID], reported above
				bad(p.Field, "%s", p.Rule)
			}
		}
	}
	return errs
}

// tcpConfig is the default transport's configuration.
func (c Config) tcpConfig() tcp.Config {
	return tcp.Config{
		ID: c.ID, Addr: c.Peers[c.ID], TLS: c.TLS, Insecure: c.TLS == nil, PeerIdentity: c.PeerIdentity, Logger: c.Logger,
	}.WithDefaults()
}

// checkAPIAddr accepts "", an http or https URL with a host, or host:port.
func checkAPIAddr(a string) error {
	switch {
	case a == "":
		return nil
	case len(a) > maxAddrLen:
		return fmt.Errorf("%d bytes exceeds %d", len(a), maxAddrLen)
	case strings.Contains(a, "://"):
		u, err := url.Parse(a)
		if err != nil {
			return fmt.Errorf("%q is not a URL: %v", a, err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%q is not an http or https URL with a host", a)
		}
	default:
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("%q is neither a URL nor host:port: %v", a, err)
		}
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
