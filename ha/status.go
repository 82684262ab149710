package ha

import (
	"errors"
	"strconv"
	"time"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/lease"
)

// Role is where a Node is in its lifecycle:
//
//	standby -> campaigning -> promoting -> active -> demoting -> standby
//
// and stopped once Run has returned.
type Role int

const (
	// RoleStandby: not leading and not campaigning (unhealthy, paused,
	// holding off after a step-down, or waiting for approval).
	RoleStandby Role = iota
	// RoleCampaigning: waiting to win the election.
	RoleCampaigning
	// RolePromoting: won a term; running the promote delay, the
	// pre-promote hook and the switcher's Promote.
	RolePromoting
	// RoleActive: running the work under the term's token.
	RoleActive
	// RoleDemoting: stopping the work, demoting the switcher, releasing
	// the lease.
	RoleDemoting
	// RoleStopped: Run has returned.
	RoleStopped
)

var roleNames = [...]string{"standby", "campaigning", "promoting", "active", "demoting", "stopped"}

// String returns the role's lower-case name.
func (r Role) String() string {
	if r >= 0 && int(r) < len(roleNames) {
		return roleNames[r]
	}
	return "role(" + strconv.Itoa(int(r)) + ")"
}

// MarshalText encodes the role by name.
func (r Role) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

var (
	// ErrNotRunning is returned by commands after Run has returned.
	ErrNotRunning = errors.New("ha: node is not running")
	// ErrPaused is returned by Switchover while maintenance mode is on.
	ErrPaused = errors.New("ha: paused for maintenance")
	// ErrBusy is returned by Switchover while the node is promoting or
	// demoting; retry once the transition has finished.
	ErrBusy = errors.New("ha: transition in progress")
	// ErrApprovalNotRequired is returned by Approve on a member that was
	// not configured with RequireApproval.
	ErrApprovalNotRequired = errors.New("ha: approval not required on this member")
	// ErrStopTimeout is reported when the work did not return within
	// Config.StopTimeout after its context ended.
	ErrStopTimeout = errors.New("ha: work did not stop in time")
	// ErrWorkExited is reported when the work returned nil while its term
	// still held.
	ErrWorkExited = errors.New("ha: work returned while active")
)

// Status is a snapshot of a Node.
type Status struct {
	ID       string       `json:"id"`
	Role     Role         `json:"role"`
	Token    fence.Token  `json:"token"`            // the current term's token, 0 if none
	Leader   lease.Leader `json:"leader"`           // as last observed; zero if none
	Since    time.Time    `json:"since"`            // when Role was entered
	Healthy  bool         `json:"healthy"`          // every check passing (after hysteresis)
	Checks   []CheckState `json:"checks,omitempty"` // per check
	Paused   bool         `json:"paused"`
	Approval string       `json:"approval,omitempty"` // "", "required" or "approved"
	Restarts int          `json:"restarts"`           // work restarts within the current window
	LastErr  string       `json:"last_error,omitempty"`
}

// CheckState is the state of one health check in Status.
type CheckState struct {
	Name    string `json:"name"`
	Healthy bool   `json:"healthy"`
	LastErr string `json:"last_error,omitempty"`
}

// EventKind classifies an Event.
type EventKind int

const (
	// EventRole: the role changed (Event.Role is the new one).
	EventRole EventKind = iota
	// EventHealth: the health of the member changed (Event.Healthy).
	EventHealth
	// EventWorkFailed: the work returned while active (Event.Err); a
	// restart or a step-down follows.
	EventWorkFailed
	// EventPaused and EventResumed: maintenance mode changed.
	EventPaused
	EventResumed
	// EventApproved: an operator approved the next takeover.
	EventApproved
	// EventLeader: the observed leader changed (Event.Leader).
	EventLeader
)

var eventNames = [...]string{"role", "health", "work-failed", "paused", "resumed", "approved", "leader"}

// String returns the kind's name.
func (k EventKind) String() string {
	if k >= 0 && int(k) < len(eventNames) {
		return eventNames[k]
	}
	return "event"
}

// Event is one observable change of a Node, delivered in order to
// Config.OnEvent. Token is the term's token at the time of the event.
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
