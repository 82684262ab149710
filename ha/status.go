package ha

import (
	"errors"

	"github.com/hakit/hakit/ha/internal/core"
)

// Role is where a Node is in its lifecycle:
//
//	standby -> campaigning -> promoting -> active -> demoting -> standby
//
// and stopped once Run has returned. Its String and MarshalText give the
// lower-case name.
type Role = core.Role

// The roles.
const (
	// RoleStandby: not leading and not campaigning (unhealthy, paused,
	// holding off after a step-down, or waiting for approval).
	RoleStandby = core.RoleStandby
	// RoleCampaigning: waiting to win the election.
	RoleCampaigning = core.RoleCampaigning
	// RolePromoting: won a term; running the promote delay, the
	// pre-promote hook and the switcher's Promote.
	RolePromoting = core.RolePromoting
	// RoleActive: running the work under the term's token.
	RoleActive = core.RoleActive
	// RoleDemoting: stopping the work, demoting the switcher, releasing
	// the lease.
	RoleDemoting = core.RoleDemoting
	// RoleStopped: Run has returned.
	RoleStopped = core.RoleStopped
)

// Status is a snapshot of a Node: ID, Role, Token (0 when not leading),
// the Leader as last observed, Since (when Role was entered), Healthy and
// the per-check Checks, Paused, Approval ("", "required" or "approved"),
// Restarts within the current window and LastErr. It encodes to JSON for
// the /status endpoint.
type Status = core.Status

// CheckState is the state of one health check in a Status.
type CheckState = core.CheckState

// RestartPolicy restarts failed work in place, with exponential backoff, up
// to Max times within Window; the next failure steps the member down. Zero
// fields take the defaults: Max 3 (negative: never restart), Window 1 min,
// Backoff 100 ms doubling up to MaxBackoff 5 s.
type RestartPolicy = core.RestartPolicy

// FailbackPolicy selects manual failback (the zero value: a recovered
// former primary rejoins as a standby) or automatic failback to Preferred
// after it has been a healthy standby for Dwell (default 30 s).
type FailbackPolicy = core.FailbackPolicy

// Event is one observable change of a Node, delivered in order to
// Config.OnEvent: Time, Kind, the Role and Token at the time, and per kind
// Healthy, Leader, Reason (for role changes) or Err.
type Event = core.Note

// EventKind classifies an Event.
type EventKind = core.NoteKind

// The kinds of Event.
const (
	EventRole       = core.NoteRole       // the role changed (Event.Role)
	EventHealth     = core.NoteHealth     // the member's health changed (Event.Healthy)
	EventWorkFailed = core.NoteWorkFailed // the work returned while active (Event.Err)
	EventPaused     = core.NotePaused     // maintenance mode turned on
	EventResumed    = core.NoteResumed    // maintenance mode turned off
	EventApproved   = core.NoteApproved   // an operator approved the next takeover
	EventLeader     = core.NoteLeader     // the observed leader changed (Event.Leader)
)

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
)
