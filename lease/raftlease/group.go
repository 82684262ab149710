package raftlease

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/hakit/hakit/lease"
	"github.com/hakit/hakit/lease/clock"
	"github.com/hakit/hakit/lease/raftlease/internal/elect"
)

var (
	// ErrNotLeader is wrapped by errors of writes and reads that need a
	// Raft leader this member is not or cannot reach. The message names
	// the leader when it is known. A write that fails with it may still
	// have been applied if it had been proposed before leadership moved.
	ErrNotLeader = errors.New("raftlease: not the leader")

	// ErrStopped is wrapped by every call on a Group whose run loop
	// stopped on its own: a failed disk write, an undecodable entry, a
	// panic (PanicError), a wiped data directory (ErrWipedMember). The
	// error names the cause and also wraps lease.ErrClosed.
	ErrStopped = errors.New("raftlease: group stopped")
)

// Group is one member of an embedded Raft group. It elects one member
// (lease.Elector, lease.Transferer) and replicates a fenced key-value
// store (Store). All methods are safe for concurrent use.
type Group struct {
	cfg  Config
	self uint64
	log  *slog.Logger
	clk  clock.Clock
	db   logStore
	tr   Transport

	recvc chan *pb.Message
	actc  chan func()
	stopc chan struct{}
	donec chan struct{}

	// Owned by the run loop.
	rn          *raft.RawNode
	sm          *fsm
	confState   *pb.ConfState
	applied     uint64
	snapIndex   uint64
	logBytes    int // bytes of the entries applied since the last snapshot
	nonce, seq  uint64
	quietUntil  time.Time // votes are ignored before this (see step)
	campaignAt  uint64    // campaign once this index is applied (new group)
	tick        clock.Timer
	confChanged bool // a configuration change was applied in this Ready
	lead        uint64
	role        raft.StateType
	raftTerm    uint64
	pending     map[uint64]*proposal
	reads       map[uint64]*readReq
	confWaiters map[uint64]chan error
	hb          heartbeatTracker
	el          electorState
	received    *receivedSnap     // a snapshot checked before Step, decoded
	probe       *prober           // non-nil while an empty member asks its peers (replace.go)
	loggedSent  map[uint64]uint64 // member -> Raft term its logged record was proposed in

	guard guard // counts dropped messages from any goroutine (its own lock)

	mu          sync.Mutex
	stopErr     error // set before donec closes
	view        lease.Leader
	leadID      string        // current Raft leader's member ID, "" if unknown
	leadSeen    uint64        // current Raft leader's Raft ID, as last published
	leadChanged chan struct{} // closed at the next publish
	observers   map[*observer]struct{}
	closing     bool
}

var (
	_ lease.Elector    = (*Group)(nil)
	_ lease.Transferer = (*Group)(nil)
)

type proposal struct {
	ch   chan result
	term uint64
	keep bool // not failed when leadership moves
}

// Start validates cfg, opens the data directory, starts the transport and
// the run loop, and returns the running member. It returns once the
// member runs, not once the group has a leader. A member whose data
// directory holds a log restarts from it; one whose directory is empty
// asks its peers whether to bootstrap a new group, join the existing one,
// or stop with ErrWipedMember (see the package doc). ctx bounds only the
// start.
func Start(ctx context.Context, cfg Config) (*Group, error) { return start(ctx, cfg, nil) }

// start is Start on the durable log db, or on the log in cfg.DataDir if db
// is nil; tests pass a log kept in memory.
func start(ctx context.Context, cfg Config, db logStore) (*Group, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	g := &Group{
		cfg:         cfg,
		self:        RaftID(cfg.ID),
		log:         cfg.Logger.With("member", cfg.ID),
		clk:         cfg.Clock,
		recvc:       make(chan *pb.Message, 4096),
		actc:        make(chan func(), 256),
		stopc:       make(chan struct{}),
		donec:       make(chan struct{}),
		sm:          newFSM(),
		pending:     map[uint64]*proposal{},
		reads:       map[uint64]*readReq{},
		confWaiters: map[uint64]chan error{},
		observers:   map[*observer]struct{}{},
	}
	var nb [8]byte
	_, _ = crand.Read(nb[:])
	g.nonce = binary.BigEndian.Uint64(nb[:])
	g.el.init(elect.Params{Self: g.self, FenceWindow: cfg.fenceWindow(), Resend: cfg.electionTimeout() / 2})
	g.hb.self, g.hb.window = g.self, cfg.fenceWindow()

	if db == nil {
		var err error
		if db, err = openLog(cfg.DataDir, g.log); err != nil {
			return nil, err
		}
	}
	g.db = db
	if err := g.open(); err != nil {
		db.Close()
		return nil, err
	}
	tr := cfg.Transport
	if tr == nil {
		ic := cfg.tcpConfig()
		ic.Name = g.peerName
		t, err := newTCP(ic)
		if err != nil {
			db.Close()
			return nil, err
		}
		tr = t
	}
	g.tr = tr
	for id, addr := range g.peerAddrs() {
		tr.SetPeer(id, addr)
	}
	if err := tr.Start(handler{g}); err != nil {
		tr.Close()
		db.Close()
		return nil, fmt.Errorf("raftlease: member %q: start transport: %w", cfg.ID, err)
	}
	go g.run()
	return g, nil
}

// open restores the state machine from the log's snapshot and creates the
// Raft node, bootstrapping a new group if the log is empty.
func (g *Group) open() error {
	snap, err := g.db.Snapshot()
	if err != nil {
		return fmt.Errorf("raftlease: member %q: read snapshot: %w", g.cfg.ID, err)
	}
	if !raft.IsEmptySnap(snap) {
		sm, err := decodeFSM(snap.GetData())
		if err != nil {
			return fmt.Errorf("raftlease: member %q: snapshot at index %d: %w", g.cfg.ID, snap.GetMetadata().GetIndex(), err)
		}
		g.sm = sm
		g.applied = snap.GetMetadata().GetIndex()
		g.snapIndex = g.applied
	}
	hs, cs, err := g.db.InitialState()
	if err != nil {
		return fmt.Errorf("raftlease: member %q: read state: %w", g.cfg.ID, err)
	}
	g.setConfState(cs)
	last, err := g.db.LastIndex()
	if err != nil {
		return fmt.Errorf("raftlease: member %q: read log: %w", g.cfg.ID, err)
	}
	fresh := last == 0 && raft.IsEmptyHardState(hs) && raft.IsEmptySnap(snap)
	g.rn, err = raft.NewRawNode(&raft.Config{
		ID:                        g.self,
		ElectionTick:              g.cfg.ElectionTicks,
		HeartbeatTick:             g.cfg.HeartbeatTicks,
		Storage:                   g.db,
		Applied:                   g.applied,
		MaxSizePerMsg:             1 << 20,
		MaxInflightMsgs:           256,
		MaxUncommittedEntriesSize: 1 << 28,
		CheckQuorum:               true,
		PreVote:                   true,
		ReadOnlyOption:            raft.ReadOnlySafe,
		StepDownOnRemoval:         true,
		Logger:                    raftLogger{g.log},
	})
	if err != nil {
		return fmt.Errorf("raftlease: member %q: %w", g.cfg.ID, err)
	}
	if !fresh {
		// A member that restarts has forgotten when it last heard from
		// the leader; it may not vote for a rival before the leader's
		// lease can have run out (see step). One that joins waits the
		// same once it knows it may (see onProbe).
		g.quietUntil = g.clk.Now().Add(time.Duration(g.cfg.ElectionTicks) * g.cfg.TickInterval)
		return nil
	}
	if !g.cfg.Join && len(g.probePeers()) == 0 {
		return g.bootstrap() // a group of one
	}
	// An empty data directory: ask the peers first (see replace.go).
	g.probe = &prober{answers: map[uint64]probeAnswer{}, since: g.clk.Now()}
	return nil
}

// bootstrap starts a new group of Config.Peers.
func (g *Group) bootstrap() error {
	ids, _ := raftIDs(g.cfg.Peers)
	peers := make([]raft.Peer, 0, len(ids))
	for id, name := range ids {
		peers = append(peers, raft.Peer{ID: id, Context: memberInfo{ID: name, Addr: g.cfg.Peers[name]}.encode()})
	}
	sort.Slice(peers, func(i, j int) bool { return peers[i].ID < peers[j].ID })
	if err := g.rn.Bootstrap(peers); err != nil {
		return fmt.Errorf("raftlease: member %q: bootstrap: %w", g.cfg.ID, err)
	}
	g.log.Info("raftlease: bootstrapped a new group", "members", len(peers))
	// On a new group nobody can hold a lease yet, so the member with the
	// lowest Raft ID starts the first election at once instead of after
	// a timeout.
	if peers[0].ID == g.self {
		g.campaignAt = uint64(len(peers))
	}
	return nil
}

// peerAddrs returns the address of every other member: the replicated
// membership wins over Config.Peers.
func (g *Group) peerAddrs() map[uint64]string {
	out := map[uint64]string{}
	for name, addr := range g.cfg.Peers {
		out[RaftID(name)] = addr
	}
	for id, m := range g.sm.members {
		if m.Addr != "" {
			out[id] = m.Addr
		}
	}
	delete(out, g.self)
	return out
}

// CloseTimeout bounds what Close spends handing over before it stops the
// member: ending the held Term, withdrawing the member's candidacy and
// moving Raft leadership away. A member cut off from the others returns
// after it, plus any disk sync in progress.
const CloseTimeout = 100 * time.Millisecond

// Close ends any held Term (its Done closes first, with Err wrapping
// lease.ErrResigned), withdraws this member's candidacy and, if it leads,
// hands Raft leadership to the best other member, waiting for both at
// most CloseTimeout; then it stops the run loop and the transport and
// closes the log. It does not remove the member from the group.
func (g *Group) Close() error {
	g.mu.Lock()
	if g.closing {
		g.mu.Unlock()
		<-g.donec
		return nil
	}
	g.closing = true
	g.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), CloseTimeout)
	g.handOff(ctx)
	cancel()
	close(g.stopc)
	<-g.donec
	err := g.tr.Close()
	if cerr := g.db.Close(); err == nil {
		err = cerr
	}
	return err
}

// handOff ends the held Term, fails waiting Campaigns with
// lease.ErrClosed, takes this member's candidacy out of the log (so that
// no leader hands leadership to a member that is going away) and moves
// Raft leadership away; it waits for the withdrawal to apply and the
// leadership to move until ctx ends.
func (g *Group) handOff(ctx context.Context) {
	withdrawn := make(chan result, 1)
	moving := false
	if g.do(ctx, func() {
		if t := g.el.held; t != nil {
			t.end(fmt.Errorf("%w: member %q is closing; it resigned the term with token %d", lease.ErrResigned, g.cfg.ID, t.raftTerm))
			g.setHeld(nil)
		}
		g.el.failWaiters(lease.ErrClosed)
		// The withdrawal first: a leader refuses proposals while it
		// transfers leadership.
		g.withdraw(withdrawn)
		moving = g.transferAway()
	}) != nil {
		return
	}
	select {
	case <-withdrawn:
	case <-ctx.Done():
		return
	}
	if moving {
		_ = g.waitLead(ctx, func(lead uint64) bool { return lead != g.self }, 0)
	}
}

// withdraw proposes this member's candidacy flag off, if the log shows it
// on; done receives the outcome once it is applied (at once if there is
// nothing to withdraw). It runs on the loop.
func (g *Group) withdraw(done chan result) {
	if len(g.el.dec.Withdraw(g.electionView(g.rn.BasicStatus()))) == 0 {
		done <- result{}
		return
	}
	c := command{kind: opCandidate, origin: g.self, nonce: g.nonce, seq: g.nextSeq(), member: g.self}
	if g.rn.Propose(c.encode()) != nil {
		done <- result{}
		return
	}
	// Kept when leadership moves: a follower's proposal is forwarded,
	// and Close waits for it to be applied.
	g.pending[c.seq] = &proposal{ch: done, term: g.raftTerm, keep: true}
}

// peerName names a member for the transport's logs from Config.Peers
// (the transport runs outside the loop, which owns the applied
// membership).
func (g *Group) peerName(id uint64) string {
	for name := range g.cfg.Peers {
		if RaftID(name) == id {
			return name
		}
	}
	return ""
}

// Stopped returns a channel that is closed once the member has stopped:
// after Close, or when it stopped on its own (see Err).
func (g *Group) Stopped() <-chan struct{} { return g.donec }

// Err returns nil while the member runs and after Close; once it stopped
// on its own, the reason, wrapping ErrStopped (a failed disk, a panic in
// its run loop, ErrWipedMember).
func (g *Group) Err() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopErr == nil || errors.Is(g.stopErr, ErrStopped) {
		return g.stopErr
	}
	return nil
}

// Stats are a member's counters of what it refused.
type Stats struct {
	// Dropped counts the messages from peers dropped before Raft saw
	// them because they cannot be legitimate, by reason (the Drop
	// constants). Each reason is also logged, at most once a second.
	Dropped map[string]uint64
	// Transport holds the TCP transport's counters when the transport is
	// a TCPTransport (or wraps one); nil otherwise.
	Transport *TCPStats
}

// Stats returns the member's counters.
func (g *Group) Stats() Stats {
	s := Stats{Dropped: g.guard.snapshot()}
	if t, ok := g.tr.(interface{ Stats() TCPStats }); ok {
		ts := t.Stats()
		s.Transport = &ts
	}
	return s
}

// ID returns this member's ID.
func (g *Group) ID() string { return g.cfg.ID }

// Config returns the member's configuration with defaults filled in.
func (g *Group) Config() Config { return g.cfg }

func (g *Group) notLeaderErr(what string) error {
	if g.lead == raft.None {
		return fmt.Errorf("%w: member %q: %s: no leader known", ErrNotLeader, g.cfg.ID, what)
	}
	return fmt.Errorf("%w: member %q: %s: the leader is %q", ErrNotLeader, g.cfg.ID, what, g.memberName(g.lead))
}

func (g *Group) memberName(id uint64) string {
	if m, ok := g.sm.members[id]; ok {
		return m.ID
	}
	for name := range g.cfg.Peers {
		if RaftID(name) == id {
			return name
		}
	}
	return fmt.Sprintf("%x", id)
}

func (g *Group) memberAddr(id uint64) string {
	if m, ok := g.sm.members[id]; ok && m.Addr != "" {
		return m.Addr
	}
	return g.cfg.Peers[g.memberName(id)]
}

// sortedVoters returns the voters of the incoming and outgoing
// configurations.
func sortedVoters(cs *pb.ConfState) (in, out []uint64) {
	in = slices.Clone(cs.GetVoters())
	out = slices.Clone(cs.GetVotersOutgoing())
	slices.Sort(in)
	slices.Sort(out)
	return in, out
}
