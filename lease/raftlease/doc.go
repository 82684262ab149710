// Package raftlease is hakit's embedded default for high availability: the
// members of a replication daemon form a Raft group (go.etcd.io/raft/v3)
// among themselves, elect one active member, and replicate a small fenced
// key-value store synchronously, with no external service and no shared
// disk.
//
// A Group is one member. Start it from a Config on every member (three or
// five, each with its own ID and DataDir and the same Peers); it
// implements lease.Elector and lease.Transferer, and Store returns the
// replicated storage.Store.
//
// # The lease
//
// Raft elects a leader by itself; Campaign announces, through the log,
// that this member wants the lease. A leader that does not want it hands
// Raft leadership to the most up-to-date member that does. Campaign
// returns once this member is Raft leader, has committed a holder record
// in its term (so reads and writes through it are safe), and a quorum has
// acknowledged one of its heartbeats recently enough. The Term's token is
// the Raft term in which the member leads, so tokens grow with every new
// leader, and a member that resigns needs a new Raft term (a round
// through another member) before it can win again: a group of one member
// cannot grant a second Term.
//
// A Term's Done closes, with Err wrapping lease.ErrLost, when the member
// stops being leader (CheckQuorum steps it down, a higher term appears,
// it is removed), when its term changes, or at its self-fence deadline:
//
//	deadline = s + (ElectionTicks-1) x TickInterval - DriftMargin
//
// where s is the latest send time of a heartbeat that a quorum of voters
// (counting the leader) acknowledged. With CheckQuorum and PreVote always
// on, a member that heard from the leader refuses to vote for anyone else
// for ElectionTicks of its own ticks, at least (ElectionTicks-1) x
// TickInterval after the heartbeat arrived, which is after s; no rival
// can be elected before s + (ElectionTicks-1) x TickInterval, so Done
// closes DriftMargin before that. This holds while clocks run at rates
// that differ by less than DriftMargin over one election timeout. A
// restarted member has forgotten when it last heard from the leader, so
// it ignores vote requests for its first election timeout (a leadership
// transfer excepted).
//
// Resign ends the Term first and then transfers Raft leadership to the
// most up-to-date campaigning member (else the most up-to-date voter),
// which leads within about one round trip. Transfer does the same towards
// a named member. Observe reports every holder record as this member
// applies it, in log order, and "no leader" when the holder's leadership
// ends. A holder record carries the holder's Config.APIAddr, which Leader
// and Observe report as lease.Leader.Addr: the address a standby's
// ha.Node forwards operator commands to (not the Raft address in Peers).
//
// # Failover bound
//
// When the holder dies without resigning, followers notice after a
// randomised 1x to 2x ElectionTicks ticks after the last heartbeat,
// pre-vote and vote (two round trips and a disk sync), and the new leader
// commits its holder record and gets a heartbeat acknowledged (one or two
// more round trips and syncs). The successor's Campaign therefore returns
// within
//
//	2 x ElectionTicks x TickInterval + 4 round trips + 3 disk syncs
//
// about 2.0 s at the defaults (100 ms ticks, 10 election ticks), and after
// ElectionTicks x TickInterval + the same in the best case. Followers
// re-phase their ticks to the leader's heartbeats, with a little random
// jitter, so the first one to time out is seldom refused by a peer whose
// tick came a little later, and two that drew the same timeout do not
// split the vote. On loopback with fsync (BenchmarkFailover, 30 crashes
// each) the time from the crash to the first write acknowledged under the
// new token measured:
//
//	defaults (100 ms x 10)        p50 1.26 s   p99 1.88 s
//	TickInterval 50 ms, 8 ticks   p50 0.53 s   p99 0.66 s
//	TickInterval 25 ms, 10 ticks  p50 0.32 s   p99 0.44 s
//
// For sub-second failover shorten the election timeout as in the last two
// rows (DriftMargin 50 ms); keep it well above the worst round trip plus
// disk sync, or a slow disk or a stalled process will depose healthy
// leaders. A member restarted less than one election timeout before the
// holder dies delays failover by up to that timeout (see above).
//
// # The store
//
// Writes (Put, CompareAndSwap, Delete) are proposed through the Raft log
// and return once the entry is committed on a quorum and applied here.
// The fence is part of the replicated state machine, so it holds on every
// member: a write is applied only if its token is at least the highest
// token applied before it, else it fails with fence.ErrStale. Versions are
// Raft indexes. Writes must be made on the Raft leader; elsewhere they
// fail at once with ErrNotLeader, naming the leader if known. A write
// whose context ends, or whose leader steps down, before it is applied
// returns an error but may still be applied; a write that returned nil
// survives every failover. Concurrent writes share disk syncs: on
// loopback with fsync (BenchmarkPut) one writer measured p50 0.85 ms
// (about 1000 writes/s) and sixteen writers 4600 writes/s at p50 2.2 ms.
//
// Reads are linearizable on every member: Get asks the leader for its
// commit index (Raft's ReadIndex, confirmed by a quorum of heartbeats),
// waits until this member has applied up to it and reads locally. On a
// follower that costs a round trip to the leader; while no leader is known
// Get waits for one, until its context ends. There are no stale local
// reads.
//
// # Persistence
//
// Each member keeps a write-ahead log and snapshots in DataDir (package
// raftlog). Entries and HardState are synced before any message that
// depends on them is sent. Every SnapshotEntries applied entries, or
// sooner once the entries applied since the last snapshot hold a quarter
// of the store's bytes, the store is snapshotted (a versioned,
// checksummed, deterministic encoding, written to the file as it is
// encoded) and the log compacted, keeping CompactionMargin entries. The
// log after the snapshot is held in memory; the snapshot is not (it is
// read from its file to be sent). On loopback with 10000 distinct
// 256-byte values (BenchmarkMemory, three members in one process) a
// member's live heap measured 4.8 MiB after the writes, twice the 2.4 MiB
// of values stored, and the three members' live heap never exceeded 14
// MiB during the writes and their snapshots. A torn write at the
// end of the log (a crash mid-write) is cut off and logged; damage before
// the tail makes Start fail with an error wrapping ErrCorrupt that names
// the file and offset. Nothing damaged is ever read as empty.
//
// # Membership
//
// Member IDs are strings; Raft numbers them with RaftID, a fixed hash.
// Start refuses Peers whose IDs collide, and AddMember an ID whose number
// is taken. To grow the group, call AddMember on the leader with the new
// member's ID and address, then start the new member with Peers naming
// the existing members and itself (set Join to say it must never
// bootstrap); it receives the log or a snapshot from the leader.
// RemoveMember takes a member out; close it afterwards. Change one member
// at a time, on a healthy group: until a new member has caught up, the
// group needs a quorum of the enlarged membership.
//
// # Starting with an empty data directory
//
// A member whose data directory is empty cannot tell from its disk
// whether it belongs to a new group or is one whose disk was wiped or
// replaced, and the second must never bootstrap a second log nor act as
// the voter it was: it forgot what it acknowledged and whom it voted for.
// So before it takes any part it asks its peers (Config.Peers):
//
//   - A new group is bootstrapped from Peers only once every member in
//     Peers has answered that it is new too (no log, or only the
//     bootstrap's entries). Start all the members of a new group; until
//     all have started, those running wait, and log whom they wait for.
//   - Otherwise the member waits for the Raft leader's answer. If the
//     leader has it as a voter known to have held a log (the group
//     records each member the first time a leader sees it acknowledge an
//     entry), the member stops: Err and every call return ErrStopped
//     wrapping ErrWipedMember, whose message names the procedure below.
//     If not (it is new, or was removed and added again), it joins: it
//     receives the log or a snapshot from the leader, bootstrapping
//     nothing.
//
// The answers come from members authenticated by their certificates
// (under Insecure, from whoever answers). A disk lost in the first moment
// after the member first joined, before a leader recorded that it holds a
// log, is not detected.
//
// # Replacing a member's disk
//
// When a member's data directory is lost (a replaced disk, a wiped
// volume, a restore that left it empty), bring it back as a new member:
//
//  1. Make sure the other members are healthy: until step 3 the group
//     needs a quorum of the remaining members.
//  2. On the leader, RemoveMember(id). (A member started with the empty
//     directory before this step stops with ErrWipedMember; that is
//     expected and harmless.)
//  3. Empty the member's data directory, if it is not empty already.
//  4. On the leader, AddMember(id, address).
//  5. Start the member (Join set or not). It receives a snapshot and the
//     log from the leader and is a full voter again with every
//     acknowledged write.
//
// A member whose directory holds a damaged log refuses to start with an
// error wrapping ErrCorrupt (see Persistence); if it cannot be repaired,
// replace it the same way.
//
// # Transport and member identity
//
// Raft messages travel over a Transport. The default, NewTCPTransport,
// keeps one connection per peer with length-prefixed, checksummed frames,
// reconnection with exponential backoff, and a bounded queue per peer:
// when it is full messages are dropped, so a slow or dead peer never
// stalls the leader, and unreachable peers are reported to Raft.
//
// Members prove who they are with mutual TLS (Config.TLS). A member's
// certificate names it with the URI SAN hakit://member/<ID> (package
// raftcert issues such certificates and documents the rule;
// Config.PeerIdentity replaces it). An accepted connection's hello must
// claim the member its certificate names; a dialled peer's certificate
// must name the member that was dialled; a mismatch closes the connection
// and logs both names. A certificate from the same CA that names no
// member (another service's) is refused in the handshake. Give the Raft
// links a CA of their own all the same.
//
// Plain TCP between members is refused for a group of more than one
// member unless Config.Insecure is set: trusted, isolated networks and
// tests only, since over plain TCP the hello's claim is taken at its
// word.
//
// What a peer can make a member hold is bounded: connections before
// their hello (TCPConfig.MaxPending, each for HandshakeTimeout, 5 s), one
// connection per member after it (a newer one replaces the older),
// frame buffers that grow only as bytes arrive, up to MaxFrameBytes
// (DefaultMaxFrameBytes, 16 MiB, which the store's snapshot must fit in),
// a frame's payload within FrameTimeout (30 s) of its header, and no
// connection kept without a frame for IdleTimeout (2 min). The accept
// loop backs off on errors (EMFILE and the like, as net/http does) and
// returns only on Close.
//
// # What a peer cannot do
//
// go.etcd.io/raft trusts its peers: some messages no member would send
// make it panic (a heartbeat whose commit index is beyond the receiver's
// log) or break its invariants (a forwarded proposal carrying a term, an
// acknowledgement of entries never sent). A Group checks every message
// before Raft sees it and drops, counts (Stats) and logs what cannot be
// legitimate; the rules are in guard.go. Heartbeat responses count
// towards the self-fence deadline only with the random stamp this leader
// sent in its current term (see the lease above), so they cannot be
// forged or replayed to keep a cut-off leader's term alive.
//
// A panic in the run loop all the same (in go.etcd.io/raft, the store or
// the log) stops the Group, not the process: its Term's Done closes
// first, and every call then fails with ErrStopped wrapping a PanicError
// with the value and stack. Stopped and Err tell an embedder that the
// member stopped on its own.
//
// Close ends the held Term, withdraws the member's candidacy and hands
// Raft leadership on, waiting for that at most CloseTimeout (100 ms); a
// member cut off from the others returns after that, plus any disk sync
// in progress.
//
// Tests and ha/hatest plug in their own Transport and a clock.Fake to run
// the group on a simulated network in virtual time.
package raftlease
