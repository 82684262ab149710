package ha

import (
	"errors"
	"time"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/ha/internal/core"
	"github.com/hakit/hakit/lease"
)

// Role is where a Node is in its lifecycle:
//
//	standby -> campaigning -> promoting -> active -> demoting -> standby
//
// and stopped once Run has returned. Its String and MarshalText give the
// lower-case name. The zero Role is no role (a Status of a Node is never
// in it).
type Role int

// The roles.
const (
	// RoleStandby: not leading and not campaigning (unhealthy, paused,
	// holding off after a step-down, or waiting for approval).
	RoleStandby Role = iota + 1
	// RoleCampaigning: waiting to win the election.
	RoleCampaigning
	// RolePromoting: won a term; running the promote delay, the
	// pre-promote hook and the switcher's Promote.
	RolePromoting
	// RoleActive: running the work under the term's token.
	RoleActive
	// RoleDemoting: stopping the work, demoting the switcher, releasing
	// the lease. A Status also says demoting, at once, for a member whose
	// term has ended or passed its deadline before its loop has caught up.
	RoleDemoting
	// RoleStopped: Run has returned.
	RoleStopped
)

// String returns the role's lower-case name ("role(N)" for a value that is
// not a role).
func (r Role) String() string { return core.Role(r).String() }

// MarshalText encodes the role by name.
func (r Role) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// Status is a snapshot of a Node. In JSON (the /status endpoint) its keys
// are the lower-case names in its tags; Leader is an object with "id",
// "token" and "addr"; tokens are decimal strings.
//
// Role and Token are decided at the moment Status is called: a member
// whose loop has it active but whose term has ended or passed its
// deadline (lease.Valid) reports RoleDemoting, so that a process frozen
// past its deadline never says "active" when it wakes.
type Status struct {
	ID       string       `json:"id"`
	Role     Role         `json:"role"`
	Token    fence.Token  `json:"token"`              // the current term's token, 0 if none
	Leader   lease.Leader `json:"leader"`             // as last observed; zero if none
	Since    time.Time    `json:"since"`              // when Role was entered
	Healthy  bool         `json:"healthy"`            // every check passing (after hysteresis)
	Checks   []CheckState `json:"checks,omitempty"`   // per check, in Config.Checks order
	Paused   bool         `json:"paused"`             // maintenance mode
	Approval string       `json:"approval,omitempty"` // "", "required" or "approved"
	Restarts int          `json:"restarts"`           // work restarts within the current window
	LastErr  string       `json:"last_error,omitempty"`
}

// CheckState is the state of one health check in a Status.
type CheckState struct {
	Name    string `json:"name"`
	Healthy bool   `json:"healthy"`
	LastErr string `json:"last_error,omitempty"`
}

func statusOfCore(s core.Status) Status {
	out := Status{
		ID: s.ID, Role: Role(s.Role), Token: s.Token, Leader: s.Leader, Since: s.Since, Healthy: s.Healthy,
		Paused: s.Paused, Approval: s.Approval, Restarts: s.Restarts, LastErr: s.LastErr,
	}
	for _, c := range s.Checks {
		out.Checks = append(out.Checks, CheckState(c))
	}
	return out
}

// Event is one observable change of a Node, delivered in order to
// Config.OnEvent.
type Event struct {
	Time    time.Time    // when it happened, on Config.Clock
	Kind    EventKind    // what happened
	Role    Role         // the role after the change
	Token   fence.Token  // the term's token at the time, 0 if none
	Healthy bool         // EventHealth: the new health; EventRole: health at the time
	Leader  lease.Leader // EventLeader: the newly observed leader (zero: none)
	Reason  string       // EventRole: why the role changed
	Err     error        // EventHealth: the failing probe's error; EventWorkFailed: the work's
}

func eventOfCore(e core.Event) Event {
	return Event{Time: e.Time, Kind: EventKind(e.Kind), Role: Role(e.Role), Token: e.Token, Healthy: e.Healthy,
		Leader: e.Leader, Reason: e.Reason, Err: e.Err}
}

// EventKind classifies an Event. The zero EventKind is no kind.
type EventKind int

// The kinds of Event.
const (
	EventRole       EventKind = iota + 1 // the role changed (Event.Role, Event.Reason)
	EventHealth                          // the member's health changed (Event.Healthy, Event.Err)
	EventWorkFailed                      // the work returned while active (Event.Err)
	EventPaused                          // maintenance mode turned on
	EventResumed                         // maintenance mode turned off
	EventApproved                        // an operator approved the next takeover
	EventLeader                          // the observed leader changed (Event.Leader)
)

// String returns the kind's name ("role", "work-failed", ...; "event(N)"
// for a value that is not a kind).
func (k EventKind) String() string { return core.EventKind(k).String() }

var (
	// ErrNotRunning is returned by commands after Run has returned.
	ErrNotRunning = errors.New("ha: node is not running")
	// ErrPaused is returned by Switchover while maintenance mode is on.
	ErrPaused = core.ErrPaused
	// ErrBusy is returned by Switchover while the node is promoting or
	// demoting; retry once the transition has finished.
	ErrBusy = core.ErrBusy
	// ErrApprovalNotRequired is returned by Approve on a member that was
	// not configured with RequireApproval.
	ErrApprovalNotRequired = core.ErrApprovalNotRequired
	// ErrStopTimeout is reported when the work did not return within
	// Config.StopTimeout after its context ended.
	ErrStopTimeout = errors.New("ha: work did not stop in time")
	// ErrWorkExited is reported when the work returned nil while its term
	// still held.
	ErrWorkExited = core.ErrWorkExited
	// ErrForward is wrapped by the error of the default Forward when it
	// refuses to send the admin token where it could be read: to a plain
	// http address that is not loopback, or with no AdminToken set.
	ErrForward = errors.New("ha: forward refused")
)
