package core

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

// The roles.
const (
	RoleStandby     Role = iota // not leading, not campaigning
	RoleCampaigning             // waiting to win the election
	RolePromoting               // won a term; promoting
	RoleActive                  // running the work under the term's token
	RoleDemoting                // stopping the work, demoting, releasing
	RoleStopped                 // Run has returned
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

// NoteKind classifies a Note.
type NoteKind int

// The kinds of Note.
const (
	NoteRole       NoteKind = iota // the role changed (Note.Role is the new one)
	NoteHealth                     // the member's health changed (Note.Healthy)
	NoteWorkFailed                 // the work returned while active (Note.Err)
	NotePaused                     // maintenance mode turned on
	NoteResumed                    // maintenance mode turned off
	NoteApproved                   // an operator approved the next takeover
	NoteLeader                     // the observed leader changed (Note.Leader)
)

var noteNames = [...]string{"role", "health", "work-failed", "paused", "resumed", "approved", "leader"}

// String returns the kind's name.
func (k NoteKind) String() string {
	if k >= 0 && int(k) < len(noteNames) {
		return noteNames[k]
	}
	return "event(" + strconv.Itoa(int(k)) + ")"
}

// Note is one observable change of a Node. Token is the term's token at the
// time of the change.
type Note struct {
	Time    time.Time
	Kind    NoteKind
	Role    Role
	Token   fence.Token
	Healthy bool
	Leader  lease.Leader
	Reason  string // why, for role changes
	Err     error
}

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

// CheckState is the state of one health check in a Status.
type CheckState struct {
	Name    string `json:"name"`
	Healthy bool   `json:"healthy"`
	LastErr string `json:"last_error,omitempty"`
}

// RestartPolicy restarts failed work in place, with exponential backoff,
// up to Max times within Window; the next failure steps the member down.
type RestartPolicy struct {
	// Max is the number of restarts allowed within Window. Default 3; a
	// negative value disables restarts (the first failure steps down).
	Max int
	// Window is the sliding window over which restarts are counted.
	// Default 1 min.
	Window time.Duration
	// Backoff is the delay before the first restart; each further restart
	// within the window doubles it up to MaxBackoff. Defaults 100 ms and
	// 5 s.
	Backoff, MaxBackoff time.Duration
}

// FailbackPolicy decides whether the active role returns to a preferred
// member after it recovers.
type FailbackPolicy struct {
	// Preferred names the member that should be active when healthy.
	// Empty means manual failback: nobody is preferred.
	Preferred string
	// Dwell is how long the preferred member must be healthy as a standby
	// before it asks the active member to hand over. Default 30 s.
	Dwell time.Duration
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
