package core

import (
	"errors"
	"strconv"
	"time"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/lease"
)

// Role is where a Node is in its lifecycle (ha.Role mirrors it, value for
// value). The zero Role is no role.
type Role int

// The roles.
const (
	RoleStandby     Role = iota + 1 // not leading, not campaigning
	RoleCampaigning                 // waiting to win the election
	RolePromoting                   // won a term; promoting
	RoleActive                      // running the work under the term's token
	RoleDemoting                    // stopping the work, demoting, releasing
	RoleStopped                     // Run has returned
)

// RoleNames are the roles' names, indexed by Role.
var RoleNames = [...]string{"", "standby", "campaigning", "promoting", "active", "demoting", "stopped"}

// String returns the role's lower-case name.
func (r Role) String() string {
	if r > 0 && int(r) < len(RoleNames) {
		return RoleNames[r]
	}
	return "role(" + strconv.Itoa(int(r)) + ")"
}

// EventKind classifies an Event (ha.EventKind mirrors it, value for
// value). The zero EventKind is no kind.
type EventKind int

// The kinds of Event.
const (
	EventRole       EventKind = iota + 1 // the role changed (Event.Role is the new one)
	EventHealth                          // the member's health changed (Event.Healthy)
	EventWorkFailed                      // the work returned while active (Event.Err)
	EventPaused                          // maintenance mode turned on
	EventResumed                         // maintenance mode turned off
	EventApproved                        // an operator approved the next takeover
	EventLeader                          // the observed leader changed (Event.Leader)
)

// EventNames are the kinds' names, indexed by EventKind.
var EventNames = [...]string{"", "role", "health", "work-failed", "paused", "resumed", "approved", "leader"}

// String returns the kind's name.
func (k EventKind) String() string {
	if k > 0 && int(k) < len(EventNames) {
		return EventNames[k]
	}
	return "event(" + strconv.Itoa(int(k)) + ")"
}

// Event is one observable change of a Node, carried by Emit. Token is the
// term's token at the time of the change.
type Event struct {
	Time    time.Time
	Kind    EventKind
	Role    Role
	Token   fence.Token
	Healthy bool
	Leader  lease.Leader
	Reason  string // why, for role changes
	Err     error
}

// Status is the Machine's view of a Node (ha.Status is built from it).
type Status struct {
	ID       string
	Role     Role
	Token    fence.Token // the current term's token, 0 if none
	Leader   lease.Leader
	Since    time.Time // when Role was entered
	Healthy  bool
	Checks   []CheckState
	Paused   bool
	Approval string // "", "required" or "approved"
	Restarts int    // work restarts within the current window
	LastErr  string
}

// CheckState is the state of one health check in a Status.
type CheckState struct {
	Name    string
	Healthy bool
	LastErr string
}

// RestartPolicy is ha.RestartPolicy with its defaults filled in: up to Max
// restarts (negative: none) within Window, waiting Backoff doubling up to
// MaxBackoff.
type RestartPolicy struct {
	Max                 int
	Window              time.Duration
	Backoff, MaxBackoff time.Duration
}

// FailbackPolicy is ha.FailbackPolicy: the member Preferred asks for the
// active role back after being a healthy standby for Dwell; "" is manual
// failback.
type FailbackPolicy struct {
	Preferred string
	Dwell     time.Duration
}

var (
	// ErrPaused answers a switchover while maintenance mode is on.
	ErrPaused = errors.New("ha: paused for maintenance")
	// ErrBusy answers a switchover while the member is promoting or
	// demoting.
	ErrBusy = errors.New("ha: transition in progress")
	// ErrApprovalNotRequired answers Approve on a member that was not
	// configured with RequireApproval.
	ErrApprovalNotRequired = errors.New("ha: approval not required on this member")
	// ErrWorkExited is recorded when the work returned nil while its term
	// still held.
	ErrWorkExited = errors.New("ha: work returned while active")
	// ErrWorkCancelled marks a work exit that the edge itself caused by
	// ending the work's context.
	ErrWorkCancelled = errors.New("ha: work cancelled")
	// ErrUnknownCommand answers a Command whose Cmd is not one of the
	// commands (the zero Cmd, say).
	ErrUnknownCommand = errors.New("ha: unknown command")
)

// hysteresis folds raw probe results into a stable healthy/unhealthy state.
type hysteresis struct {
	rise, fall int
	known      bool // a first result has been seen
	up         bool
	streak     int // consecutive results contrary to up
}

// observe records one result and reports whether the state changed. The
// state starts unhealthy and the first result decides it.
func (h *hysteresis) observe(pass bool) bool {
	if !h.known {
		h.known, h.up = true, pass
		return pass // "unhealthy" was already the assumed state
	}
	if pass == h.up {
		h.streak = 0
		return false
	}
	h.streak++
	need := h.fall
	if pass {
		need = h.rise
	}
	if h.streak < need {
		return false
	}
	h.up, h.streak = pass, 0
	return true
}
