// Package core is the decision logic of an ha.Node: a pure state machine
// that takes Inputs (what happened at the edge) and the time, and returns
// Actions (what the edge must do). One Action, Emit, carries an Event: an
// observable change of the Node, which package ha publishes as ha.Event.
// "Event" means only that. The package is internal so that ha and
// ha/hatest share it while users see only package ha, whose exported types
// mirror the ones here.
package core

import (
	"errors"
	"fmt"
	"time"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/lease"
)

// Input is an input of the Machine: something that happened at the edge.
type Input interface{ isInput() }

// The inputs. Token and Run identify the term and the work run an outcome
// belongs to; the Machine ignores outcomes of terms and runs it has moved
// past.
type (
	// Stop: the Node's Run context ended.
	Stop struct{}
	// CheckResult: one probe of check Index finished (Err nil = pass).
	CheckResult struct {
		Index int
		Err   error
	}
	// LeaderChanged: the elector reported a new leader (zero: none).
	LeaderChanged struct{ Leader lease.Leader }
	// Won: the campaign returned a term with this token.
	Won struct{ Token fence.Token }
	// CampaignFailed: the campaign returned an error (not a cancellation).
	CampaignFailed struct{ Err error }
	// Promoted: the promotion of the term finished.
	Promoted struct {
		Token fence.Token
		Err   error
	}
	// TermEnded: the term's Done channel closed; Err is the term's Err.
	TermEnded struct {
		Token fence.Token
		Err   error
	}
	// WorkExited: a work run returned (or overran its stop timeout).
	WorkExited struct {
		Token fence.Token
		Run   int
		Err   error
	}
	// SwitchDemoted: the switcher's Demote finished.
	SwitchDemoted struct {
		Token fence.Token
		Err   error
	}
	// Released: the lease was resigned or transferred.
	Released struct {
		Token fence.Token
		Err   error
	}
	// TimerFired: a timer armed with SetTimer fired.
	TimerFired struct{ Kind TimerKind }
	// MaintenanceSeen: the shared maintenance flag was read (Policy.SharedMaintenance).
	MaintenanceSeen struct{ Paused bool }
	// MaintenanceWritten: a WriteMaintenance finished.
	MaintenanceWritten struct {
		ID     uint64
		Paused bool
		Err    error
	}
	// Command: an operator command; answered by a Reply with the same ID.
	Command struct {
		ID  uint64
		Cmd Cmd
		To  string // switchover target; empty for any member
	}
)

func (Stop) isInput()               {}
func (CheckResult) isInput()        {}
func (LeaderChanged) isInput()      {}
func (Won) isInput()                {}
func (CampaignFailed) isInput()     {}
func (Promoted) isInput()           {}
func (TermEnded) isInput()          {}
func (WorkExited) isInput()         {}
func (SwitchDemoted) isInput()      {}
func (Released) isInput()           {}
func (TimerFired) isInput()         {}
func (Command) isInput()            {}
func (MaintenanceSeen) isInput()    {}
func (MaintenanceWritten) isInput() {}

// Cmd is an operator command. The zero Cmd is no command: a Command
// carrying it is answered with ErrUnknownCommand.
type Cmd int

// The operator commands.
const (
	CmdSwitchover Cmd = iota + 1
	CmdPause
	CmdResume
	CmdApprove
)

// TimerKind names one of the Machine's timers; setting a timer of a kind
// replaces the one armed before. The zero TimerKind names no timer.
type TimerKind int

// The timers.
const (
	TimerHoldOff TimerKind = iota + 1 // campaign again after a step-down
	TimerRestart                      // restart failed work
	TimerDwell                        // failback dwell elapsed
	// NumTimers is one more than the largest TimerKind, for arrays
	// indexed by kind.
	NumTimers
)

// Action is an output of the Machine: something the edge must do, in the
// order given.
type Action interface{ isAction() }

// The actions. Each that starts something asynchronous reports back with the
// input named in its comment.
type (
	// Campaign starts campaigning (Won or CampaignFailed).
	Campaign struct{}
	// CancelCampaign withdraws the campaign; a term it still wins comes
	// back as Won and is answered with ResignStray.
	CancelCampaign struct{}
	// ResignStray resigns a term won after the campaign was withdrawn
	// (Released, which the Machine ignores).
	ResignStray struct{ Token fence.Token }
	// Promote runs the promote delay, the pre-promote hook and the
	// switcher's Promote, abandoned if the term ends (Promoted).
	Promote struct{ Token fence.Token }
	// CancelPromote abandons the promotion in progress (Promoted follows).
	CancelPromote struct{}
	// StartWork starts work run Run under Token (WorkExited).
	StartWork struct {
		Token fence.Token
		Run   int
	}
	// StopWork cancels work run Run and bounds the wait for it
	// (WorkExited).
	StopWork struct {
		Token fence.Token
		Run   int
	}
	// DemoteSwitch runs the switcher's Demote (SwitchDemoted).
	DemoteSwitch struct{ Token fence.Token }
	// Release resigns the term, after transferring the lease to
	// TransferTo if it is set (Released).
	Release struct {
		Token      fence.Token
		TransferTo string
	}
	// SetTimer arms the timer of kind Kind to fire after D (TimerFired).
	SetTimer struct {
		Kind TimerKind
		D    time.Duration
	}
	// CancelTimer disarms the timer of kind Kind.
	CancelTimer struct{ Kind TimerKind }
	// Forward sends command Cmd (with To, for a switchover) to the leader;
	// ID is the command to answer with the outcome, 0 for the Machine's
	// own failback request.
	Forward struct {
		ID     uint64
		Leader lease.Leader
		Cmd    Cmd
		To     string
	}
	// WriteMaintenance stores the shared maintenance flag under Token
	// (MaintenanceWritten).
	WriteMaintenance struct {
		ID     uint64
		Token  fence.Token
		Paused bool
	}
	// Reply answers command ID.
	Reply struct {
		ID  uint64
		Err error
	}
	// Emit publishes Event to observers.
	Emit struct{ Event Event }
	// Exit: the Machine has stopped; the edge returns.
	Exit struct{}
)

func (Campaign) isAction()         {}
func (CancelCampaign) isAction()   {}
func (ResignStray) isAction()      {}
func (Promote) isAction()          {}
func (CancelPromote) isAction()    {}
func (StartWork) isAction()        {}
func (StopWork) isAction()         {}
func (DemoteSwitch) isAction()     {}
func (Release) isAction()          {}
func (SetTimer) isAction()         {}
func (CancelTimer) isAction()      {}
func (Forward) isAction()          {}
func (WriteMaintenance) isAction() {}
func (Reply) isAction()            {}
func (Emit) isAction()             {}
func (Exit) isAction()             {}

// Policy is what the Machine decides with: the parts of ha.Config that are
// decisions rather than IO. Zero durations are taken as they are; ha.New
// fills in the defaults.
type Policy struct {
	ID              string        // this member's ID
	HoldOff         time.Duration // wait after a step-down before campaigning again
	CampaignRetry   time.Duration // wait after a failed campaign
	Restart         RestartPolicy
	Failback        FailbackPolicy
	RequireApproval bool
	Checks          []CheckPolicy // one per health check, in the order of CheckResult.Index
	// SharedMaintenance keeps maintenance mode in shared storage, so that
	// it holds for the whole cluster: Pause and Resume go through the
	// active member, which writes the flag under its token, and every
	// member follows the flag it reads (MaintenanceSeen).
	SharedMaintenance bool
}

// CheckPolicy is the hysteresis of one health check.
type CheckPolicy struct {
	Name       string
	Rise, Fall int // consecutive passes to turn healthy, failures to turn unhealthy
}

// Machine is the Node's state. Its invariants:
//   - token != 0 exactly in promoting, active and demoting;
//   - workRunning only in active and demoting;
//   - in demoting, the steps run in order: stop work, demote switcher,
//     release the lease; each waits for the previous one's Input.
type Machine struct {
	p   Policy
	now time.Time
	out []Action

	role      Role
	since     time.Time
	token     fence.Token
	termEnded bool
	run       int  // number of the current work run, to discard late exits
	running   bool // a work run is in progress
	promoting bool // a promotion is in progress
	restarts  []time.Time
	lastErr   error

	checks    []hysteresis
	checkErrs []error
	healthy   bool
	upSince   time.Time

	paused    bool // maintenance mode set on this member
	shared    bool // the shared maintenance flag as last read or written
	override  bool // resumed with no leader: ignore the shared flag until this member clears it
	approved  bool
	stopping  bool
	holdUntil time.Time
	armedHold time.Time // the hold-off deadline a timer is armed for
	leader    lease.Leader

	// demotion in progress
	stage      demoteStage
	reason     string
	transferTo string
	hold       bool
	replyTo    uint64 // switchover Cmd answered when the lease is released

	failbackAsked bool // a failback request went to the current leader
}

// demoteStage orders a demotion: the promotion and the work must have
// finished before the switcher is demoted, and the switcher before the lease
// is released, so that traffic never points at a member whose work runs on
// without a lease, nor away from one that still has it.
type demoteStage int

const (
	stageStopping demoteStage = iota // waiting for the promotion and the work to end
	stageSwitch                      // waiting for the switcher's Demote
	stageRelease                     // waiting for the lease to be released
)

// New returns a Machine in the standby role at time now.
func New(p Policy, now time.Time) *Machine {
	m := &Machine{p: p, now: now, since: now, role: RoleStandby, checks: make([]hysteresis, len(p.Checks)), checkErrs: make([]error, len(p.Checks))}
	for i, c := range p.Checks {
		m.checks[i] = hysteresis{rise: c.Rise, fall: c.Fall}
	}
	m.healthy = len(p.Checks) == 0
	if m.healthy {
		m.upSince = now
	}
	return m
}

// Start returns the actions of a Node that has just started.
func (m *Machine) Start(now time.Time) []Action {
	m.now, m.out = now, nil
	m.reconcile()
	return m.out
}

// Step applies one Input at time now and returns the actions it calls for,
// in the order they must be carried out.
func (m *Machine) Step(now time.Time, ev Input) []Action {
	m.now, m.out = now, nil
	switch ev := ev.(type) {
	case Stop:
		m.onStop()
	case CheckResult:
		m.onCheck(ev)
	case LeaderChanged:
		m.onLeader(ev.Leader)
	case Won:
		m.onWon(ev.Token)
	case CampaignFailed:
		if m.role == RoleCampaigning {
			m.lastErr = ev.Err
			m.setRole(RoleStandby, "campaign failed: "+ev.Err.Error())
			m.holdUntil = m.now.Add(m.p.CampaignRetry)
		}
	case Promoted:
		m.onPromoted(ev)
	case TermEnded:
		m.onTermEnded(ev)
	case WorkExited:
		m.onWorkExited(ev)
	case SwitchDemoted:
		if ev.Token == m.token && m.role == RoleDemoting && m.stage == stageSwitch {
			if ev.Err != nil {
				m.lastErr = ev.Err
			}
			m.stage = stageRelease
			m.do(Release{Token: m.token, TransferTo: m.transferTo})
		}
	case Released:
		m.onReleased(ev)
	case TimerFired:
		m.onTimer(ev.Kind)
	case Command:
		m.onCommand(ev)
	case MaintenanceSeen:
		m.setPaused(func() {
			m.shared = ev.Paused
			if !ev.Paused {
				m.override = false
			}
		})
	case MaintenanceWritten:
		m.onMaintenanceWritten(ev)
	default:
		panic(fmt.Sprintf("ha: unknown Input %T", ev))
	}
	m.reconcile()
	return m.out
}

func (m *Machine) do(a Action) { m.out = append(m.out, a) }

func (m *Machine) emit(ev Event) {
	ev.Time, ev.Role, ev.Token = m.now, m.role, m.token
	m.do(Emit{Event: ev})
}

func (m *Machine) setRole(r Role, reason string) {
	if m.role == r {
		return
	}
	m.role, m.since = r, m.now
	m.emit(Event{Kind: EventRole, Reason: reason, Healthy: m.healthy})
}

// eligible reports whether this member may campaign, apart from hold-off.
func (m *Machine) eligible() bool {
	return !m.stopping && m.healthy && !m.isPaused() && (!m.p.RequireApproval || m.approved)
}

// reconcile starts or withdraws the campaign to match eligibility, and arms
// the timers that will make a member eligible again.
func (m *Machine) reconcile() {
	switch m.role {
	case RoleStandby:
		if !m.eligible() {
			return
		}
		if m.now.Before(m.holdUntil) {
			if m.armedHold != m.holdUntil {
				m.armedHold = m.holdUntil
				m.do(SetTimer{Kind: TimerHoldOff, D: m.holdUntil.Sub(m.now)})
			}
			return
		}
		m.setRole(RoleCampaigning, "eligible")
		m.do(Campaign{})
	case RoleCampaigning:
		if !m.eligible() {
			m.do(CancelCampaign{})
			m.setRole(RoleStandby, m.ineligibleReason())
		}
	}
	m.considerFailback()
}

func (m *Machine) ineligibleReason() string {
	switch {
	case m.stopping:
		return "stopping"
	case !m.healthy:
		return "unhealthy"
	case m.isPaused():
		return "paused"
	default:
		return "awaiting approval"
	}
}

func (m *Machine) onStop() {
	m.stopping = true
	switch m.role {
	case RoleStandby, RoleCampaigning:
		if m.role == RoleCampaigning {
			m.do(CancelCampaign{})
		}
		m.setRole(RoleStopped, "stopping")
		m.do(Exit{})
	case RolePromoting, RoleActive:
		m.beginDemote("stopping", "", false)
	}
	// In demoting, onReleased sees m.stopping and exits.
}

func (m *Machine) onCheck(ev CheckResult) {
	m.checkErrs[ev.Index] = ev.Err
	if !m.checks[ev.Index].observe(ev.Err == nil) {
		return
	}
	healthy := true
	for _, h := range m.checks {
		healthy = healthy && h.up
	}
	if healthy == m.healthy {
		return
	}
	m.healthy = healthy
	if healthy {
		m.upSince = m.now
		if m.p.Failback.Preferred == m.p.ID {
			m.do(SetTimer{Kind: TimerDwell, D: m.p.Failback.Dwell})
		}
	} else if ev.Err != nil {
		m.lastErr = fmt.Errorf("check %s: %w", m.p.Checks[ev.Index].Name, ev.Err)
	}
	m.emit(Event{Kind: EventHealth, Healthy: healthy, Err: ev.Err})
	if !healthy && !m.isPaused() && (m.role == RoleActive || m.role == RolePromoting) {
		m.beginDemote("unhealthy", "", true)
	}
}

func (m *Machine) onLeader(l lease.Leader) {
	if l == m.leader {
		return
	}
	m.leader, m.failbackAsked = l, false
	m.emit(Event{Kind: EventLeader, Leader: l})
}

func (m *Machine) onWon(t fence.Token) {
	if m.role != RoleCampaigning {
		// The campaign was withdrawn but won anyway: give it back.
		m.do(ResignStray{Token: t})
		return
	}
	m.token, m.termEnded = t, false
	m.approved = false // one approval, one takeover
	m.restarts = nil
	m.setRole(RolePromoting, "won term")
	m.promoting = true
	m.do(Promote{Token: t})
}

func (m *Machine) onPromoted(ev Promoted) {
	if ev.Token != m.token || !m.promoting {
		return
	}
	m.promoting = false
	if m.role == RoleDemoting {
		m.advanceDemote()
		return
	}
	if ev.Err != nil {
		m.lastErr = ev.Err
		m.beginDemote("promotion failed: "+ev.Err.Error(), "", true)
		return
	}
	m.setRole(RoleActive, "promoted")
	m.startWork()
	if m.override {
		// Resumed while nobody led: clear the shared flag for everyone.
		m.do(WriteMaintenance{Token: m.token, Paused: false})
	}
}

func (m *Machine) startWork() {
	m.run++
	m.running = true
	m.do(StartWork{Token: m.token, Run: m.run})
}

func (m *Machine) onTermEnded(ev TermEnded) {
	if ev.Token != m.token || m.token == 0 {
		return
	}
	m.termEnded = true
	if ev.Err != nil && !errors.Is(ev.Err, lease.ErrResigned) {
		m.lastErr = ev.Err
	}
	if m.role == RolePromoting || m.role == RoleActive {
		m.beginDemote("term ended", "", true)
	}
}

func (m *Machine) onWorkExited(ev WorkExited) {
	if ev.Token != m.token || ev.Run != m.run || !m.running {
		return // a run that was already abandoned or replaced
	}
	m.running = false
	err := ev.Err
	if m.role == RoleDemoting {
		if err != nil && !errors.Is(err, ErrWorkCancelled) {
			m.lastErr = err
		}
		m.advanceDemote()
		return
	}
	if m.role != RoleActive {
		return
	}
	if errors.Is(err, ErrWorkCancelled) {
		// While active, only the term's Done ends the work's context
		// (StopWork comes with demoting), and TermEnded is on its way:
		// it demotes. This is no failure of the work.
		return
	}
	if err == nil {
		err = ErrWorkExited
	}
	m.lastErr = err
	m.emit(Event{Kind: EventWorkFailed, Err: err})
	// Count restarts within the sliding window.
	kept := m.restarts[:0]
	for _, at := range m.restarts {
		if m.now.Sub(at) < m.p.Restart.Window {
			kept = append(kept, at)
		}
	}
	m.restarts = kept
	if m.p.Restart.Max < 0 || len(m.restarts) >= m.p.Restart.Max {
		m.beginDemote(fmt.Sprintf("work failed %d times within %v: %v", len(m.restarts)+1, m.p.Restart.Window, err), "", true)
		return
	}
	backoff := m.p.Restart.Backoff << len(m.restarts)
	if backoff > m.p.Restart.MaxBackoff || backoff <= 0 {
		backoff = m.p.Restart.MaxBackoff
	}
	m.restarts = append(m.restarts, m.now)
	m.do(SetTimer{Kind: TimerRestart, D: backoff})
}

// beginDemote starts the ordered demotion: stop the work, demote the
// switcher, release the lease (to transferTo, if named). hold makes the
// member wait HoldOff before it campaigns again.
func (m *Machine) beginDemote(reason, transferTo string, hold bool) {
	m.reason, m.transferTo, m.hold = reason, transferTo, hold
	m.stage = stageStopping
	m.setRole(RoleDemoting, reason)
	m.do(CancelTimer{Kind: TimerRestart})
	if m.promoting {
		m.do(CancelPromote{})
	}
	if m.running {
		m.do(StopWork{Token: m.token, Run: m.run})
	}
	m.advanceDemote()
}

// advanceDemote demotes the switcher once nothing of the term runs any more.
func (m *Machine) advanceDemote() {
	if m.stage != stageStopping || m.promoting || m.running {
		return
	}
	m.stage = stageSwitch
	m.do(DemoteSwitch{Token: m.token})
}

func (m *Machine) onReleased(ev Released) {
	if ev.Token != m.token || m.role != RoleDemoting || m.stage != stageRelease {
		return
	}
	if ev.Err != nil {
		m.lastErr = ev.Err
	}
	if m.replyTo != 0 {
		m.do(Reply{ID: m.replyTo, Err: ev.Err})
		m.replyTo = 0
	}
	m.token, m.termEnded = 0, false
	if m.hold {
		m.holdUntil = m.now.Add(m.p.HoldOff)
	}
	if m.stopping {
		m.setRole(RoleStopped, "stopped")
		m.do(Exit{})
		return
	}
	m.setRole(RoleStandby, m.reason)
}

func (m *Machine) onTimer(k TimerKind) {
	switch k {
	case TimerRestart:
		if m.role == RoleActive && !m.running {
			m.startWork()
		}
	case TimerHoldOff, TimerDwell:
		// reconcile (run after every step) does the rest.
	}
}

func (m *Machine) onCommand(ev Command) {
	reply := func(err error) { m.do(Reply{ID: ev.ID, Err: err}) }
	switch ev.Cmd {
	case CmdPause, CmdResume:
		m.onMaintenanceCommand(ev.ID, ev.Cmd == CmdPause)
	case CmdApprove:
		if !m.p.RequireApproval {
			reply(ErrApprovalNotRequired)
			return
		}
		if !m.approved {
			m.approved = true
			m.emit(Event{Kind: EventApproved})
		}
		reply(nil)
	case CmdSwitchover:
		m.onSwitchover(ev.ID, ev.To)
	default:
		reply(fmt.Errorf("%w: %d", ErrUnknownCommand, ev.Cmd))
	}
}

// isPaused reports whether maintenance mode is on for this member: set
// here, or set for the cluster and not overridden.
func (m *Machine) isPaused() bool { return m.paused || (m.shared && !m.override) }

// setPaused changes maintenance mode through f and reacts to the change.
func (m *Machine) setPaused(f func()) {
	was := m.isPaused()
	f()
	now := m.isPaused()
	switch {
	case now && !was:
		m.emit(Event{Kind: EventPaused})
	case was && !now:
		m.emit(Event{Kind: EventResumed})
		// Step-downs held back by maintenance happen now.
		if !m.healthy && m.role == RoleActive {
			m.beginDemote("unhealthy", "", true)
		}
	}
}

// onMaintenanceCommand handles Pause (pause true) and Resume. Without
// shared maintenance the mode is this member's alone. With it, the active
// member writes the shared flag and a standby forwards the command to the
// active member; with no active member, the command applies here, and a
// Resume overrides the shared flag so that this member can campaign and,
// once active, clear the flag for everyone.
func (m *Machine) onMaintenanceCommand(id uint64, pause bool) {
	switch {
	case !m.p.SharedMaintenance:
	case m.role == RoleActive:
		m.do(WriteMaintenance{ID: id, Token: m.token, Paused: pause})
		return
	case !m.leader.IsZero() && m.leader.ID != m.p.ID:
		cmd := CmdResume
		if pause {
			cmd = CmdPause
		}
		m.do(Forward{ID: id, Leader: m.leader, Cmd: cmd})
		return
	}
	m.setPaused(func() {
		m.paused = pause
		if !pause && m.shared {
			m.override = true
		}
	})
	m.do(Reply{ID: id})
}

func (m *Machine) onMaintenanceWritten(ev MaintenanceWritten) {
	if ev.Err == nil {
		m.setPaused(func() {
			m.shared, m.paused = ev.Paused, false
			if !ev.Paused {
				m.override = false
			}
		})
	} else {
		m.lastErr = ev.Err
	}
	if ev.ID != 0 {
		m.do(Reply{ID: ev.ID, Err: ev.Err})
	}
}

func (m *Machine) onSwitchover(id uint64, to string) {
	reply := func(err error) { m.do(Reply{ID: id, Err: err}) }
	switch {
	case m.isPaused():
		reply(ErrPaused)
	case m.role == RoleActive:
		if to == m.p.ID {
			reply(nil) // already there
			return
		}
		// Hold off so that, with no named successor, another member wins.
		m.beginDemote("switchover", to, true)
		m.replyTo = id
	case m.role == RolePromoting || m.role == RoleDemoting:
		reply(ErrBusy)
	case m.leader.IsZero():
		reply(fmt.Errorf("ha: switchover: %w", lease.ErrNoLeader))
	case m.leader.ID == m.p.ID:
		reply(ErrBusy) // this member's own term is still being set up or torn down
	default:
		m.do(Forward{ID: id, Leader: m.leader, Cmd: CmdSwitchover, To: to})
	}
}

// considerFailback asks the active member to hand over to this one when it
// is the preferred member and has been healthy as a standby for the dwell
// time. One request per leader.
func (m *Machine) considerFailback() {
	fb := m.p.Failback
	if fb.Preferred == "" || fb.Preferred != m.p.ID || m.failbackAsked {
		return
	}
	if (m.role != RoleStandby && m.role != RoleCampaigning) || !m.healthy || m.isPaused() {
		return
	}
	if m.leader.IsZero() || m.leader.ID == m.p.ID {
		return
	}
	if m.now.Sub(m.upSince) < fb.Dwell {
		return
	}
	m.failbackAsked = true
	m.do(Forward{Leader: m.leader, Cmd: CmdSwitchover, To: m.p.ID})
}

// Status returns the Machine's view of the Node.
func (m *Machine) Status() Status {
	s := Status{
		ID: m.p.ID, Role: m.role, Token: m.token, Leader: m.leader, Since: m.since,
		Healthy: m.healthy, Paused: m.isPaused(), Restarts: len(m.restarts),
	}
	if m.lastErr != nil {
		s.LastErr = m.lastErr.Error()
	}
	if m.p.RequireApproval {
		s.Approval = "required"
		if m.approved {
			s.Approval = "approved"
		}
	}
	for i, c := range m.p.Checks {
		cs := CheckState{Name: c.Name, Healthy: m.checks[i].up}
		if m.checkErrs[i] != nil {
			cs.LastErr = m.checkErrs[i].Error()
		}
		s.Checks = append(s.Checks, cs)
	}
	return s
}
