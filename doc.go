// Package hakit gives a replication process — a CDC capture, a log shipper,
// a file mirror — single-active high availability as a library.
//
// Run N identical instances of the binary. Exactly one of them works; when it
// dies, hangs or is cut off, another takes over within seconds, resumes
// exactly where the first stopped, re-points clients at itself, and the old
// one can no longer write anything that counts, not even if it wakes up
// later. What used to take a cluster manager, shared disks, DNS failover
// records, start/stop scripts and a hand-kept checkpoint table is a few
// lines of wiring.
//
// # The guarantees
//
// Every package defends these five, and the tests check them:
//
//  1. Single active. At any moment at most one member believes it is active
//     and can still have a write accepted. A member stops its work (its
//     term's Done channel closes) before its lease can expire anywhere else,
//     allowing for a configured bound on clock drift and scheduling delay.
//     What it says about itself (a health check, "I am primary") is decided
//     from the term's deadline at the moment it answers, so a process that
//     wakes from a freeze does not claim a term that has ended.
//  2. Fencing. Every term carries a fencing token strictly larger than every
//     earlier term's. Every write that matters — a checkpoint, a state record,
//     a DNS change, a sink write that supports it — carries the token, and
//     once a resource has admitted token T it rejects any token below T with
//     an error matching fence.ErrStale. A process that was paused past its
//     lease cannot corrupt anything when it wakes.
//  3. No lost progress. An acknowledged checkpoint is never lost and never
//     goes backwards. After a failover the new active member resumes from the
//     newest acknowledged checkpoint, or from the sink's own durable
//     position if that is newer. A sink that is behind the checkpoint
//     (restored, replaced, or a reused key) is replayed to from its own
//     position, or the stream refuses to start with an error naming both
//     positions: records are never skipped. A checkpoint and a sink record
//     each other's identity, and a mismatch is refused.
//  4. No silent duplicates. With a sink that stores its position in the same
//     transaction as the records, each record is applied exactly once across
//     any number of failovers; with a plain sink, at least once, and the
//     replayed span is bounded by the checkpoint interval.
//  5. Liveness. After the active member fails, or after a partition heals,
//     some healthy member becomes active within a bound that follows from the
//     configuration (lease TTL, or Raft election timeout, plus promotion
//     time).
//
// Bad input never breaks them: a corrupted checkpoint, a truncated log, a
// malformed configuration or a hostile peer gives an error that names the
// problem, never a silent restart from position zero.
//
// What hakit cannot do: guarantee 1 rests on clocks not drifting apart by
// more than the configured margin during one lease period; guarantee 2 is
// what protects you when they do, but only for resources that check the
// token. A resource that cannot check tokens needs a promote delay (see
// package ha).
//
// # How the packages fit
//
//	fence      tokens, and the Guard that admits them
//	lease      Elector and Term: who is active, and for which token
//	           (etcdlease on etcd, raftlease on an embedded Raft group,
//	           memlease in process for tests; clock for virtual time)
//	storage    fenced key-value storage for checkpoints and state
//	           (memstore, filestore on a shared volume, etcdstore; the Raft
//	           group's own store)
//	replicate  Source -> Sink with fenced, resumable checkpoints
//	dns        Switchers that point traffic at the active member
//	           (health endpoint, exec hooks, RFC 2136, Route 53, VIP)
//	ha         the Node that ties them together; ha/hatest simulates
//	           whole clusters and checks their histories against the
//	           guarantees
//	examples   hamirror, a reference daemon with a one-command demo
//	           (go run ./examples/hamirror demo), and the smallest wiring
//
// Each contract has a conformance suite that a new backend passes with one
// call: storage/storagetest, lease/electortest, dns/switchertest.
//
// The current Term is handed to the work: its token flows into every
// write, its Done channel cancels the work, and a store that can bind
// writes to the term (etcdstore) does; nothing else in the work path needs
// to know which backend elected it.
package hakit
