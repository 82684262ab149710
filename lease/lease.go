// Package lease defines leader election for hakit: the Elector that members
// campaign through and the Term that a winner holds.
//
// # The contract
//
// Every Elector implementation (etcdlease, raftlease, memlease) promises:
//
//   - At most one Term of an election is held at a time. A Term's Token is
//     strictly larger than the Token of every earlier Term of the same
//     election, whichever member held it.
//   - A Term's Done channel closes before the lease can be granted to anyone
//     else, allowing for a configured bound on clock drift between members
//     (each backend names its option; see its doc). A holder that is cut off
//     therefore stops believing it leads before a successor's Campaign
//     returns, as long as real clock drift stays within that bound. Done may
//     also close early, whenever the holder can no longer be sure it holds
//     the lease; while the holder's process runs, it never closes late.
//   - Resign closes Done and then releases the lease at once, so a
//     successor takes over within about one round trip rather than after a
//     timeout. Close does the same for a Term its Elector holds.
//   - Campaign honours its context: when ctx ends first it returns an error
//     wrapping ctx.Err() and leaves nothing behind, so the member neither
//     wins later nor delays other campaigners.
//   - A Term's Deadline is never after the moment a successor can be
//     granted the lease (allowing for the same drift bound), so an answer
//     checked against it at the moment it is given (Valid) is true even
//     from a process that was frozen and has not yet seen Done close.
//   - Leader and Observe report the holder of a Term (ID, Token, Addr), or
//     "no leader"; Observe delivers every change, in the order the changes
//     happened. Addr is the address of the holder's API as it advertises
//     it (each backend has a setting for it), where a standby forwards
//     operator commands.
//
// Package electortest checks all of this; every Elector passes it.
//
// What the contract does not give: it cannot stop a holder whose process
// is paused (a long GC pause, SIGSTOP, a frozen VM) past its Done deadline
// from acting when it wakes, before it has seen Done close. That is the job
// of fencing: every write that matters carries Term.Token and is checked by
// the resource (see packages fence and storage).
package lease

import (
	"context"
	"errors"
	"time"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/storage"
)

var (
	// ErrNoLeader is returned by Elector.Leader when nobody holds the lease.
	ErrNoLeader = errors.New("lease: no leader")
	// ErrClosed is returned by an Elector's methods after Close.
	ErrClosed = errors.New("lease: elector closed")
	// ErrResigned is what Term.Err wraps after the holder resigned.
	ErrResigned = errors.New("lease: resigned")
	// ErrLost is what Term.Err wraps when the lease ended without a
	// resignation: it expired, was revoked, or another member took over.
	ErrLost = errors.New("lease: lost")
)

// Term is one member's tenure as leader. It is returned by a successful
// Campaign and is safe for concurrent use.
type Term interface {
	// Token is the fencing token of this term: strictly larger than the
	// token of every earlier term of the same election.
	Token() fence.Token
	// Done is closed when the term ends or can no longer be trusted. After
	// it is closed the holder must stop acting as leader.
	Done() <-chan struct{}
	// Err is nil while the term is held; once Done is closed it says why
	// the term ended, wrapping ErrResigned or ErrLost.
	Err() error
	// Resign gives the lease up now so that a successor can take over at
	// once. It closes Done before releasing the lease. Resigning an ended
	// term is a no-op that returns nil.
	Resign(ctx context.Context) error
	// Deadline is the instant, on the Elector's clock, after which the
	// term can no longer be trusted: no successor can be granted the
	// lease before it (within the backend's drift margin), and Done
	// closes by then while the holder's process runs. It moves later
	// as the lease is renewed and never earlier.
	//
	// Done cannot close while the holder's process is frozen, so an
	// answer given on the term's behalf (a health check, "I am
	// primary") must check both, at the moment it answers: the term
	// holds while Done is open and now is before Deadline (see Valid).
	// Once Done is closed the term is over, whatever Deadline says (a
	// resigned term's Deadline may lie ahead).
	//
	// Deadline is never the zero time: an Elector that cannot bound its
	// terms in time cannot implement Term. (A zero Deadline would make
	// Valid false: the term is then never trusted.)
	Deadline() time.Time
}

// Valid reports whether term can still be trusted at now, a reading of
// the clock its Elector runs on: its Done is open and now is before its
// Deadline. It is the check to make at the moment an answer is given on
// the term's behalf, since a process frozen past the deadline has not yet
// had the chance to close Done. A nil term is not valid.
func Valid(term Term, now time.Time) bool {
	if term == nil {
		return false
	}
	select {
	case <-term.Done():
		return false
	default:
	}
	return now.Before(term.Deadline())
}

// Leader describes the holder of the lease. The zero Leader means nobody
// holds it.
//
// In JSON its fields are "id", "token" (a decimal string) and "addr".
type Leader struct {
	ID    string      `json:"id"`             // the member's ID
	Token fence.Token `json:"token"`          // the token of the holder's term
	Addr  string      `json:"addr,omitempty"` // the member's advertised API address (a URL or host:port), if any
}

// IsZero reports whether l is the zero Leader, "no leader".
func (l Leader) IsZero() bool { return l == Leader{} }

// Elector is one member's handle on an election. It is safe for concurrent
// use, but a member holds at most one Term at a time: a Campaign while this
// member already holds a Term fails with an error (each backend names it)
// and leaves that Term alone; it never returns a second Term.
//
// After Close, Campaign and Leader return errors wrapping ErrClosed and
// Observe returns a closed channel.
type Elector interface {
	// Campaign blocks until this member holds the lease and returns its
	// Term, or until ctx ends (the error then wraps ctx.Err()) or the
	// Elector is closed (ErrClosed). A Campaign that returns an error
	// leaves nothing behind in the election.
	Campaign(ctx context.Context) (Term, error)
	// Leader returns the current leader as far as this member knows, or
	// ErrNoLeader.
	Leader(ctx context.Context) (Leader, error)
	// Observe returns a channel that receives the current leader at once
	// and then every change, in order, with the zero Leader for "no
	// leader". Changes are queued for a slow reader, in order; an elector
	// may bound the queue by coalescing a long backlog to the newest
	// holder (raftlease does past 64 changes), so a reader that falls far
	// behind can miss intermediate holders but always sees the latest.
	// The channel is closed when ctx ends or the Elector is closed.
	Observe(ctx context.Context) <-chan Leader
	// Close resigns any Term this member holds (its Err then wraps
	// ErrResigned), ends a Campaign in progress with ErrClosed, closes the
	// Observe channels and releases the Elector's resources. Closing again
	// is a no-op.
	Close() error
}

// Transferer is implemented by electors that can hand the lease to a named
// member directly (Raft leadership transfer). The holder's Term ends before
// the successor's begins.
type Transferer interface {
	// Transfer hands the lease held by this member to the member with ID
	// to, and returns once that member leads or ctx ends.
	Transfer(ctx context.Context, to string) error
}

// TermBinder is implemented by a storage.Store whose writes can be bound
// to a Term: the bound Store refuses every write once the term's lease has
// ended, even before a successor has written anything, which fencing alone
// cannot do (etcdstore.Store binds to the terms of lease/etcdlease).
// replicate.Stream.RunTerm and ha.Node's shared maintenance flag bind their
// Store this way when it is a TermBinder.
type TermBinder interface {
	storage.Store
	// ForTerm returns the Store bound to term, or an error if term is
	// not one this Store can bind to (a term of another elector).
	ForTerm(term Term) (storage.Store, error)
}
