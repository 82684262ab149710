package ha

import (
	"errors"
	"fmt"
	"time"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/lease"
)

// The Node's decisions live here, as a pure step function: an event and the
// current time in, a list of actions out. Nothing in this file blocks,
// starts a goroutine or reads a clock, which is what lets the tests (and
// ha/hatest) drive every transition deterministically. node.go carries the
// actions out and turns their outcomes back into events.

// events

type event interface{ isEvent() }

type (
	evStop  struct{}
	evCheck struct {
		index int
		err   error
	}
	evLeader         struct{ leader lease.Leader }
	evWon            struct{ token fence.Token }
	evCampaignFailed struct{ err error }
	evPromoted       struct {
		token fence.Token
		err   error
	}
	evTermEnded struct {
		token fence.Token
		err   error
	}
	evWorkExited struct {
		token fence.Token
		run   int
		err   error
	}
	evSwitchDemoted struct {
		token fence.Token
		err   error
	}
	evReleased struct {
		token fence.Token
		err   error
	}
	evTimer   struct{ kind timerKind }
	evCommand struct {
		id  uint64
		cmd command
		to  string
	}
)

func (evStop) isEvent()           {}
func (evCheck) isEvent()          {}
func (evLeader) isEvent()         {}
func (evWon) isEvent()            {}
func (evCampaignFailed) isEvent() {}
func (evPromoted) isEvent()       {}
func (evTermEnded) isEvent()      {}
func (evWorkExited) isEvent()     {}
func (evSwitchDemoted) isEvent()  {}
func (evReleased) isEvent()       {}
func (evTimer) isEvent()          {}
func (evCommand) isEvent()        {}

type command int

const (
	cmdSwitchover command = iota
	cmdPause
	cmdResume
	cmdApprove
)

type timerKind int

const (
	timerHoldOff timerKind = iota // campaign again after a step-down
	timerRestart                  // restart failed work
	timerDwell                    // failback dwell elapsed
	numTimers
)

// actions

type action interface{ isAction() }

type (
	actCampaign       struct{}
	actCancelCampaign struct{}
	actResignStray    struct{ token fence.Token } // a term won after the campaign was withdrawn
	actPromote        struct{ token fence.Token }
	actCancelPromote  struct{}
	actStartWork      struct {
		token fence.Token
		run   int
	}
	actStopWork struct {
		token fence.Token
		run   int
	}
	actDemoteSwitch struct{ token fence.Token }
	actRelease      struct {
		token      fence.Token
		transferTo string
	}
	actSetTimer struct {
		kind timerKind
		d    time.Duration
	}
	actCancelTimer struct{ kind timerKind }
	actForward     struct {
		id     uint64 // command to answer; 0 for the Node's own failback request
		leader lease.Leader
		to     string
	}
	actReply struct {
		id  uint64
		err error
	}
	actEmit struct{ ev Event }
	actExit struct{}
)

func (actCampaign) isAction()       {}
func (actCancelCampaign) isAction() {}
func (actResignStray) isAction()    {}
func (actPromote) isAction()        {}
func (actCancelPromote) isAction()  {}
func (actStartWork) isAction()      {}
func (actStopWork) isAction()       {}
func (actDemoteSwitch) isAction()   {}
func (actRelease) isAction()        {}
func (actSetTimer) isAction()       {}
func (actCancelTimer) isAction()    {}
func (actForward) isAction()        {}
func (actReply) isAction()          {}
func (actEmit) isAction()           {}
func (actExit) isAction()           {}

// policy is the part of Config the machine decides with.
type policy struct {
	id              string
	holdOff         time.Duration
	campaignRetry   time.Duration
	restart         RestartPolicy
	failback        FailbackPolicy
	requireApproval bool
	checks          []Check
}

// machine is the Node's state. Its invariants:
//   - token != 0 exactly in promoting, active and demoting;
//   - workRunning only in active and demoting;
//   - in demoting, the steps run in order: stop work, demote switcher,
//     release the lease; each waits for the previous one's event.
type machine struct {
	p   policy
	now time.Time
	out []action

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

	paused    bool
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
	replyTo    uint64 // switchover command answered when the lease is released

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

func newMachine(p policy, now time.Time) *machine {
	m := &machine{p: p, now: now, since: now, checks: make([]hysteresis, len(p.checks)), checkErrs: make([]error, len(p.checks))}
	for i, c := range p.checks {
		m.checks[i] = hysteresis{rise: c.Rise, fall: c.Fall}
	}
	m.healthy = len(p.checks) == 0
	if m.healthy {
		m.upSince = now
	}
	return m
}

// start returns the actions of a Node that has just started.
func (m *machine) start(now time.Time) []action {
	m.now, m.out = now, nil
	m.reconcile()
	return m.out
}

// step applies one event at time now and returns the actions it calls for,
// in the order they must be carried out.
func (m *machine) step(now time.Time, ev event) []action {
	m.now, m.out = now, nil
	switch ev := ev.(type) {
	case evStop:
		m.onStop()
	case evCheck:
		m.onCheck(ev)
	case evLeader:
		m.onLeader(ev.leader)
	case evWon:
		m.onWon(ev.token)
	case evCampaignFailed:
		if m.role == RoleCampaigning {
			m.lastErr = ev.err
			m.setRole(RoleStandby, "campaign failed: "+ev.err.Error())
			m.holdUntil = m.now.Add(m.p.campaignRetry)
		}
	case evPromoted:
		m.onPromoted(ev)
	case evTermEnded:
		m.onTermEnded(ev)
	case evWorkExited:
		m.onWorkExited(ev)
	case evSwitchDemoted:
		if ev.token == m.token && m.role == RoleDemoting && m.stage == stageSwitch {
			if ev.err != nil {
				m.lastErr = ev.err
			}
			m.stage = stageRelease
			m.do(actRelease{token: m.token, transferTo: m.transferTo})
		}
	case evReleased:
		m.onReleased(ev)
	case evTimer:
		m.onTimer(ev.kind)
	case evCommand:
		m.onCommand(ev)
	default:
		panic(fmt.Sprintf("ha: unknown event %T", ev))
	}
	m.reconcile()
	return m.out
}

func (m *machine) do(a action) { m.out = append(m.out, a) }

func (m *machine) emit(ev Event) {
	ev.Time, ev.Role, ev.Token = m.now, m.role, m.token
	m.do(actEmit{ev})
}

func (m *machine) setRole(r Role, reason string) {
	if m.role == r {
		return
	}
	m.role, m.since = r, m.now
	m.emit(Event{Kind: EventRole, Reason: reason, Healthy: m.healthy})
}

// eligible reports whether this member may campaign, apart from hold-off.
func (m *machine) eligible() bool {
	return !m.stopping && m.healthy && !m.paused && (!m.p.requireApproval || m.approved)
}

// reconcile starts or withdraws the campaign to match eligibility, and arms
// the timers that will make a member eligible again.
func (m *machine) reconcile() {
	switch m.role {
	case RoleStandby:
		if !m.eligible() {
			return
		}
		if m.now.Before(m.holdUntil) {
			if m.armedHold != m.holdUntil {
				m.armedHold = m.holdUntil
				m.do(actSetTimer{kind: timerHoldOff, d: m.holdUntil.Sub(m.now)})
			}
			return
		}
		m.setRole(RoleCampaigning, "eligible")
		m.do(actCampaign{})
	case RoleCampaigning:
		if !m.eligible() {
			m.do(actCancelCampaign{})
			m.setRole(RoleStandby, m.ineligibleReason())
		}
	}
	m.considerFailback()
}

func (m *machine) ineligibleReason() string {
	switch {
	case m.stopping:
		return "stopping"
	case !m.healthy:
		return "unhealthy"
	case m.paused:
		return "paused"
	default:
		return "awaiting approval"
	}
}

func (m *machine) onStop() {
	m.stopping = true
	switch m.role {
	case RoleStandby, RoleCampaigning:
		if m.role == RoleCampaigning {
			m.do(actCancelCampaign{})
		}
		m.setRole(RoleStopped, "stopping")
		m.do(actExit{})
	case RolePromoting, RoleActive:
		m.beginDemote("stopping", "", false)
	}
	// In demoting, onReleased sees m.stopping and exits.
}

func (m *machine) onCheck(ev evCheck) {
	m.checkErrs[ev.index] = ev.err
	if !m.checks[ev.index].observe(ev.err == nil) {
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
		if m.p.failback.Preferred == m.p.id {
			m.do(actSetTimer{kind: timerDwell, d: m.p.failback.Dwell})
		}
	} else if ev.err != nil {
		m.lastErr = fmt.Errorf("check %s: %w", m.p.checks[ev.index].Name, ev.err)
	}
	m.emit(Event{Kind: EventHealth, Healthy: healthy, Err: ev.err})
	if !healthy && !m.paused && (m.role == RoleActive || m.role == RolePromoting) {
		m.beginDemote("unhealthy", "", true)
	}
}

func (m *machine) onLeader(l lease.Leader) {
	if l == m.leader {
		return
	}
	m.leader, m.failbackAsked = l, false
	m.emit(Event{Kind: EventLeader, Leader: l})
}

func (m *machine) onWon(t fence.Token) {
	if m.role != RoleCampaigning {
		// The campaign was withdrawn but won anyway: give it back.
		m.do(actResignStray{token: t})
		return
	}
	m.token, m.termEnded = t, false
	m.approved = false // one approval, one takeover
	m.restarts = nil
	m.setRole(RolePromoting, "won term")
	m.promoting = true
	m.do(actPromote{token: t})
}

func (m *machine) onPromoted(ev evPromoted) {
	if ev.token != m.token || !m.promoting {
		return
	}
	m.promoting = false
	if m.role == RoleDemoting {
		m.advanceDemote()
		return
	}
	if ev.err != nil {
		m.lastErr = ev.err
		m.beginDemote("promotion failed: "+ev.err.Error(), "", true)
		return
	}
	m.setRole(RoleActive, "promoted")
	m.startWork()
}

func (m *machine) startWork() {
	m.run++
	m.running = true
	m.do(actStartWork{token: m.token, run: m.run})
}

func (m *machine) onTermEnded(ev evTermEnded) {
	if ev.token != m.token || m.token == 0 {
		return
	}
	m.termEnded = true
	if ev.err != nil && !errors.Is(ev.err, lease.ErrResigned) {
		m.lastErr = ev.err
	}
	if m.role == RolePromoting || m.role == RoleActive {
		m.beginDemote("term ended", "", true)
	}
}

func (m *machine) onWorkExited(ev evWorkExited) {
	if ev.token != m.token || ev.run != m.run || !m.running {
		return // a run that was already abandoned or replaced
	}
	m.running = false
	err := ev.err
	if m.role == RoleDemoting {
		if err != nil && !errors.Is(err, errWorkCancelled) {
			m.lastErr = err
		}
		m.advanceDemote()
		return
	}
	if m.role != RoleActive {
		return
	}
	if err == nil || errors.Is(err, errWorkCancelled) {
		err = ErrWorkExited
	}
	m.lastErr = err
	m.emit(Event{Kind: EventWorkFailed, Err: err})
	// Count restarts within the sliding window.
	kept := m.restarts[:0]
	for _, at := range m.restarts {
		if m.now.Sub(at) < m.p.restart.Window {
			kept = append(kept, at)
		}
	}
	m.restarts = kept
	if m.p.restart.Max < 0 || len(m.restarts) >= m.p.restart.Max {
		m.beginDemote(fmt.Sprintf("work failed %d times within %v: %v", len(m.restarts)+1, m.p.restart.Window, err), "", true)
		return
	}
	backoff := m.p.restart.Backoff << len(m.restarts)
	if backoff > m.p.restart.MaxBackoff || backoff <= 0 {
		backoff = m.p.restart.MaxBackoff
	}
	m.restarts = append(m.restarts, m.now)
	m.do(actSetTimer{kind: timerRestart, d: backoff})
}

// beginDemote starts the ordered demotion: stop the work, demote the
// switcher, release the lease (to transferTo, if named). hold makes the
// member wait HoldOff before it campaigns again.
func (m *machine) beginDemote(reason, transferTo string, hold bool) {
	m.reason, m.transferTo, m.hold = reason, transferTo, hold
	m.stage = stageStopping
	m.setRole(RoleDemoting, reason)
	m.do(actCancelTimer{kind: timerRestart})
	if m.promoting {
		m.do(actCancelPromote{})
	}
	if m.running {
		m.do(actStopWork{token: m.token, run: m.run})
	}
	m.advanceDemote()
}

// advanceDemote demotes the switcher once nothing of the term runs any more.
func (m *machine) advanceDemote() {
	if m.stage != stageStopping || m.promoting || m.running {
		return
	}
	m.stage = stageSwitch
	m.do(actDemoteSwitch{token: m.token})
}

func (m *machine) onReleased(ev evReleased) {
	if ev.token != m.token || m.role != RoleDemoting || m.stage != stageRelease {
		return
	}
	if ev.err != nil {
		m.lastErr = ev.err
	}
	if m.replyTo != 0 {
		m.do(actReply{id: m.replyTo, err: ev.err})
		m.replyTo = 0
	}
	m.token, m.termEnded = 0, false
	if m.hold {
		m.holdUntil = m.now.Add(m.p.holdOff)
	}
	if m.stopping {
		m.setRole(RoleStopped, "stopped")
		m.do(actExit{})
		return
	}
	m.setRole(RoleStandby, m.reason)
}

func (m *machine) onTimer(k timerKind) {
	switch k {
	case timerRestart:
		if m.role == RoleActive && !m.running {
			m.startWork()
		}
	case timerHoldOff, timerDwell:
		// reconcile (run after every step) does the rest.
	}
}

func (m *machine) onCommand(ev evCommand) {
	reply := func(err error) { m.do(actReply{id: ev.id, err: err}) }
	switch ev.cmd {
	case cmdPause:
		if !m.paused {
			m.paused = true
			m.emit(Event{Kind: EventPaused})
		}
		reply(nil)
	case cmdResume:
		if m.paused {
			m.paused = false
			m.emit(Event{Kind: EventResumed})
			if !m.healthy && m.role == RoleActive {
				m.beginDemote("unhealthy", "", true)
			}
		}
		reply(nil)
	case cmdApprove:
		if !m.p.requireApproval {
			reply(ErrApprovalNotRequired)
			return
		}
		if !m.approved {
			m.approved = true
			m.emit(Event{Kind: EventApproved})
		}
		reply(nil)
	case cmdSwitchover:
		m.onSwitchover(ev.id, ev.to)
	}
}

func (m *machine) onSwitchover(id uint64, to string) {
	reply := func(err error) { m.do(actReply{id: id, err: err}) }
	switch {
	case m.paused:
		reply(ErrPaused)
	case m.role == RoleActive:
		if to == m.p.id {
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
	case m.leader.ID == m.p.id:
		reply(ErrBusy) // this member's own term is still being set up or torn down
	default:
		m.do(actForward{id: id, leader: m.leader, to: to})
	}
}

// considerFailback asks the active member to hand over to this one when it
// is the preferred member and has been healthy as a standby for the dwell
// time. One request per leader.
func (m *machine) considerFailback() {
	fb := m.p.failback
	if fb.Preferred == "" || fb.Preferred != m.p.id || m.failbackAsked {
		return
	}
	if (m.role != RoleStandby && m.role != RoleCampaigning) || !m.healthy || m.paused {
		return
	}
	if m.leader.IsZero() || m.leader.ID == m.p.id {
		return
	}
	if m.now.Sub(m.upSince) < fb.Dwell {
		return
	}
	m.failbackAsked = true
	m.do(actForward{leader: m.leader, to: m.p.id})
}

// status fills the machine's part of a Status.
func (m *machine) status() Status {
	s := Status{
		ID: m.p.id, Role: m.role, Token: m.token, Leader: m.leader, Since: m.since,
		Healthy: m.healthy, Paused: m.paused, Restarts: len(m.restarts),
	}
	if m.lastErr != nil {
		s.LastErr = m.lastErr.Error()
	}
	if m.p.requireApproval {
		s.Approval = "required"
		if m.approved {
			s.Approval = "approved"
		}
	}
	for i, c := range m.p.checks {
		cs := CheckState{Name: c.Name, Healthy: m.checks[i].up}
		if m.checkErrs[i] != nil {
			cs.LastErr = m.checkErrs[i].Error()
		}
		s.Checks = append(s.Checks, cs)
	}
	return s
}

// errWorkCancelled marks a work exit that the Node itself caused.
var errWorkCancelled = errors.New("ha: work cancelled")
