// Package etcdlease is a lease.Elector on etcd (go.etcd.io/etcd/client/v3).
//
// # How an election works
//
// Every campaign grants its own etcd lease and puts a key
// <prefix><lease ID in hex> attached to it, holding the member's ID and
// address. The key with the oldest create revision under the prefix leads;
// every other campaigner waits for the deletion of the key created just
// before its own, so a deletion wakes exactly one waiter (a handover, see
// Transfer below, wakes them all once). A Term's fencing
// token is its leader key's create revision, which etcd makes strictly
// larger for every key created later, so tokens of later terms are larger.
//
// # When Done closes
//
// The package does not rely on concurrency.Session or the client's
// KeepAlive stream to learn that the lease is gone: that signal is measured
// from when a reply arrived and checked about once a second, so with a
// 2 s TTL it can fire well after etcd has already let a successor in.
// Instead each campaign drives its own keepalives (one request every TTL/3,
// more often while they go unanswered) and records, on the Clock, the time
// each request was sent. etcd renews a lease for the full TTL when the
// request arrives, which is after it was sent, so
//
//	deadline = send time of the newest answered keepalive + granted TTL - DriftMargin
//
// is before the moment etcd can expire the lease, as long as this member's
// clock and the etcd leader's clock drift apart, and this member's timers
// run late, by less than DriftMargin in all over one TTL. Done closes at
// that deadline unless an answered keepalive has moved it (or earlier: see
// below). A successor can only win after the leader key is gone,
// that is after expiry, so a holder that is cut off stops strictly before
// a successor's Campaign returns. Done also closes, earlier, when etcd says
// the lease is not found (expired or revoked), when the leader key is
// deleted, and on Resign or Close.
//
// # A starved process
//
// The deadline is only as good as the timer that acts on it, and a timer
// fires late when the process is starved of CPU (a loaded machine, a
// container at its CPU quota, a long GC). While a term is held the keeper
// wakes every DriftMargin/4 and measures how late each of its timers
// fired; it ends the term at the deadline less the largest lateness of the
// last TTL, expecting its deadline timer to be as late, and at once when a
// timer fires more than DriftMargin/2 late, since it can then no longer
// keep the margin. (A keepalive answer that arrives after that point does
// not revive the term.) Term.Deadline stays the deadline itself, the
// bound a check at answer time (lease.Valid) compares with.
//
// What this does not give: a process that is frozen (SIGSTOP, a paused
// VM, a stall longer than the margin) across its deadline learns that only
// when it runs again; every write that matters must therefore carry
// Term.Token and be fenced by the resource (package storage, and
// etcdstore's binding to a Term), and every answer given for the term must
// be checked at the moment it is given (lease.Valid, which ha.Node does).
//
// # TTL
//
// etcd grants leases in whole seconds, so the TTL must be a whole number of
// seconds, at least one. etcd also raises every TTL to its minimum,
// 1.5 × its election timeout rounded up to a second (with etcd's default
// 1 s election timeout, 2 s). The deadline uses the TTL etcd actually
// granted. A successor takes over after roughly TTL − TTL/3 to TTL after
// the holder was cut off, plus up to half a second for etcd's expiry scan.
//
// # Transfer
//
// Elector implements lease.Transferer: the holder hands the lease to a
// named member that has a campaign waiting, ahead of campaigns that have
// waited longer, without breaking "the oldest key leads":
//
//  1. The holder reads the election and finds the named member's campaign
//     key (else ErrNotWaiting). In one transaction that checks its own
//     leader key and that campaign key are both still there, it writes a
//     handover record naming the successor at HandoverKey, a key beside
//     the prefix (never under it, so Leader, Observe and the line of
//     campaigns do not see it), attached to a fresh lease of one TTL, so
//     that a handover nobody completes ends by itself.
//  2. Every waiting campaign reads the handover key in the same
//     transaction in which it checks its place in line, and also wakes when
//     the record is written. A campaign whose key is older than the
//     successor's gives way: in one transaction it deletes its key and
//     creates a new one on the same lease (<prefix><lease ID in hex>.<n>),
//     which puts it at the back of the line (a new, larger create
//     revision) without ever leaving it.
//  3. The holder waits until the successor's key is the oldest but its
//     own, at most TTL/2 (a campaign cut off from etcd cannot give way);
//     if that does not happen it removes the record and keeps its term
//     (ErrHandoverLapsed). Then it resigns: Done closes, the lease is
//     revoked and its key deleted, and the successor, now first in line,
//     wins as any campaign does, with a larger token. Observers see the
//     holder and then the successor, with no one in between (unless the
//     holder vanished after writing the record: then the first waiter
//     shows as leader until it gives way).
//  4. The successor's Campaign, finding the record names it, deletes the
//     record after it won; that tells the holder's Transfer to return.
//     Transfer removes the record on every way out.
//
// While a record names another member, a campaign that finds itself first
// in line with that member not waiting at all does not win: it holds off
// until the record goes (the holder removes it when the successor's key
// disappears, or its lease expires within one TTL) or a campaign key is
// added. A record that does not decode, or has no lease, is logged and
// ignored, so a stray value cannot stop the election for good. Members
// built before Transfer existed do not give way; a transfer past them ends
// with ErrHandoverLapsed and the holder still holding.
//
// # Reconnecting
//
// How fast a holder recovers from a broken connection (a restarted etcd, a
// healed partition) is mostly up to gRPC's reconnect backoff, which by
// default waits 1 s after a failed dial and grows 1.6 times per failure. With
// a short TTL, give the client a shorter backoff, for example
// grpc.WithConnectParams with a BaseDelay of 50 ms and a MaxDelay of 500 ms
// in clientv3.Config.DialOptions, so that the first keepalive after the
// outage reaches etcd before the deadline.
//
// # Assumptions about etcd
//
// The renewal rule above is etcd's: a keepalive resets the lease to the
// full TTL on the leader when it is received, and a new etcd leader
// extends every lease rather than shortening it. A restart of a
// single-member etcd therefore never expires a lease early: the term
// survives if the server is back before the holder's deadline and ends
// (safely, before anyone else can win) if not.
package etcdlease
