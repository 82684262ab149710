package core

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/lease"
	"pgregory.net/rapid"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

type mh struct {
	t   *testing.T
	m   *Machine
	now time.Time
}

func newMH(t *testing.T, p Policy) *mh {
	t.Helper()
	if p.ID == "" {
		p.ID = "a"
	}
	if p.HoldOff == 0 {
		p.HoldOff = 5 * time.Second
	}
	if p.CampaignRetry == 0 {
		p.CampaignRetry = time.Second
	}
	if p.Restart == (RestartPolicy{}) {
		p.Restart = RestartPolicy{Max: 3, Window: time.Minute, Backoff: 100 * time.Millisecond, MaxBackoff: 5 * time.Second}
	}
	return &mh{t: t, m: New(p, t0), now: t0}
}

// quiet drops emitted events, which most tests do not look at.
func quiet(acts []Action) []Action {
	var out []Action
	for _, a := range acts {
		if _, ok := a.(Emit); !ok {
			out = append(out, a)
		}
	}
	return out
}

func (h *mh) start(want ...Action) {
	h.t.Helper()
	h.check("start", quiet(h.m.Start(h.now)), want)
}

func (h *mh) step(ev Input, want ...Action) {
	h.t.Helper()
	h.check(fmt.Sprintf("%T%+v", ev, ev), quiet(h.m.Step(h.now, ev)), want)
}

func (h *mh) check(what string, got, want []Action) {
	h.t.Helper()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		h.t.Fatalf("after %s:\n got  %#v\n want %#v", what, got, want)
	}
}

func (h *mh) role(want Role) {
	h.t.Helper()
	if h.m.role != want {
		h.t.Fatalf("role = %v, want %v", h.m.role, want)
	}
}

func (h *mh) advance(d time.Duration) { h.now = h.now.Add(d) }

// toActive drives a healthy member from start to active with token t.
func (h *mh) toActive(t fence.Token) {
	h.t.Helper()
	h.start(Campaign{})
	h.step(Won{Token: t}, Promote{Token: t})
	h.step(Promoted{Token: t}, StartWork{Token: t, Run: 1})
	h.role(RoleActive)
}

// The term's Done cancels the work's context before the loop sees
// TermEnded: that exit is no failure of the work (no restart, no
// work-failed event), and TermEnded demotes with nothing left to stop.
func TestMachineWorkCancelledByTheTermIsNoFailure(t *testing.T) {
	h := newMH(t, Policy{})
	h.toActive(7)
	if acts := h.m.Step(h.now, WorkExited{Token: 7, Run: 1, Err: ErrWorkCancelled}); len(acts) != 0 {
		t.Fatalf("work cancelled by the term's end: %#v, want nothing yet", acts)
	}
	h.step(TermEnded{Token: 7, Err: lease.ErrLost}, CancelTimer{Kind: TimerRestart}, DemoteSwitch{Token: 7})
	if errors.Is(h.m.lastErr, ErrWorkExited) || h.m.Status().Restarts != 0 {
		t.Fatalf("last error %v, restarts %d: the exit was counted as a failure", h.m.lastErr, h.m.Status().Restarts)
	}
}

func TestMachineLifecycle(t *testing.T) {
	h := newMH(t, Policy{})
	h.toActive(7)
	// The lease is lost: stop the work, then demote, then release, in order.
	lost := fmt.Errorf("expired: %w", lease.ErrLost)
	h.step(TermEnded{Token: 7, Err: lost}, CancelTimer{Kind: TimerRestart}, StopWork{Token: 7, Run: 1})
	h.role(RoleDemoting)
	h.step(WorkExited{Token: 7, Run: 1, Err: ErrWorkCancelled}, DemoteSwitch{Token: 7})
	h.step(SwitchDemoted{Token: 7}, Release{Token: 7})
	h.step(Released{Token: 7}, SetTimer{Kind: TimerHoldOff, D: 5 * time.Second})
	h.role(RoleStandby)
	if !errors.Is(h.m.lastErr, lease.ErrLost) {
		t.Fatalf("lastErr = %v, want ErrLost", h.m.lastErr)
	}
	h.advance(5 * time.Second)
	h.step(TimerFired{Kind: TimerHoldOff}, Campaign{})
	h.role(RoleCampaigning)
	h.step(Won{Token: 9}, Promote{Token: 9})
}

func TestMachineIgnoresStaleEvents(t *testing.T) {
	h := newMH(t, Policy{})
	h.toActive(7)
	h.step(TermEnded{Token: 6})
	h.step(WorkExited{Token: 7, Run: 0})
	h.step(Promoted{Token: 7})
	h.step(Released{Token: 7})
	h.step(SwitchDemoted{Token: 7})
	h.role(RoleActive)
}

func TestMachineRestartPolicy(t *testing.T) {
	h := newMH(t, Policy{})
	h.toActive(3)
	boom := errors.New("boom")
	for i, d := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond} {
		h.step(WorkExited{Token: 3, Run: i + 1, Err: boom}, SetTimer{Kind: TimerRestart, D: d})
		h.advance(d)
		h.step(TimerFired{Kind: TimerRestart}, StartWork{Token: 3, Run: i + 2})
	}
	// The fourth failure within the window steps down.
	h.step(WorkExited{Token: 3, Run: 4, Err: boom}, CancelTimer{Kind: TimerRestart}, DemoteSwitch{Token: 3})
	h.role(RoleDemoting)
	if !errors.Is(h.m.lastErr, boom) {
		t.Fatalf("lastErr = %v", h.m.lastErr)
	}
}

func TestMachineRestartWindowSlides(t *testing.T) {
	h := newMH(t, Policy{Restart: RestartPolicy{Max: 1, Window: time.Minute, Backoff: time.Second, MaxBackoff: time.Second}})
	h.toActive(3)
	for run := 1; run <= 5; run++ {
		// A nil return while active is a failure too.
		h.step(WorkExited{Token: 3, Run: run}, SetTimer{Kind: TimerRestart, D: time.Second})
		h.advance(2 * time.Minute)
		h.step(TimerFired{Kind: TimerRestart}, StartWork{Token: 3, Run: run + 1})
	}
	if !errors.Is(h.m.lastErr, ErrWorkExited) {
		t.Fatalf("lastErr = %v, want ErrWorkExited", h.m.lastErr)
	}
}

func TestMachineNoRestarts(t *testing.T) {
	h := newMH(t, Policy{Restart: RestartPolicy{Max: -1, Window: time.Minute, Backoff: time.Second, MaxBackoff: time.Second}})
	h.toActive(3)
	h.step(WorkExited{Token: 3, Run: 1, Err: errors.New("x")}, CancelTimer{Kind: TimerRestart}, DemoteSwitch{Token: 3})
}

func TestMachineHealthHysteresis(t *testing.T) {
	h := newMH(t, Policy{Checks: []CheckPolicy{{Name: "db", Rise: 2, Fall: 3}}})
	h.start() // no result yet: unhealthy, no campaign
	h.role(RoleStandby)
	fail := errors.New("down")
	h.step(CheckResult{Index: 0, Err: fail})
	h.role(RoleStandby)
	h.step(CheckResult{Index: 0}) // after a first failure, one pass is not enough
	h.role(RoleStandby)
	h.step(CheckResult{Index: 0}, Campaign{})
	h.role(RoleCampaigning)
}

func TestMachineUnhealthyActiveStepsDown(t *testing.T) {
	h := newMH(t, Policy{Checks: []CheckPolicy{{Name: "db", Rise: 2, Fall: 3}}})
	h.start()
	h.step(CheckResult{Index: 0}, Campaign{})
	h.step(Won{Token: 4}, Promote{Token: 4})
	h.step(Promoted{Token: 4}, StartWork{Token: 4, Run: 1})
	fail := errors.New("down")
	h.step(CheckResult{Index: 0, Err: fail})
	h.step(CheckResult{Index: 0}) // a pass resets the streak
	h.step(CheckResult{Index: 0, Err: fail})
	h.step(CheckResult{Index: 0, Err: fail})
	h.role(RoleActive)
	h.step(CheckResult{Index: 0, Err: fail}, CancelTimer{Kind: TimerRestart}, StopWork{Token: 4, Run: 1})
	h.role(RoleDemoting)
	h.step(WorkExited{Token: 4, Run: 1, Err: ErrWorkCancelled}, DemoteSwitch{Token: 4})
	h.step(SwitchDemoted{Token: 4}, Release{Token: 4})
	// Unhealthy: no campaign, no hold-off timer needed yet.
	h.step(Released{Token: 4})
	h.role(RoleStandby)
	// Healthy again (two passes) but holding off.
	h.step(CheckResult{Index: 0})
	h.step(CheckResult{Index: 0}, SetTimer{Kind: TimerHoldOff, D: 5 * time.Second})
	h.advance(5 * time.Second)
	h.step(TimerFired{Kind: TimerHoldOff}, Campaign{})
}

func TestMachineUnhealthyCampaignerWithdraws(t *testing.T) {
	h := newMH(t, Policy{Checks: []CheckPolicy{{Name: "db", Rise: 1, Fall: 1}}})
	h.start()
	h.step(CheckResult{Index: 0}, Campaign{})
	h.step(CheckResult{Index: 0, Err: errors.New("down")}, CancelCampaign{})
	h.role(RoleStandby)
	// The withdrawn campaign won anyway: the term is given back at once.
	h.step(Won{Token: 5}, ResignStray{Token: 5})
	h.role(RoleStandby)
	if h.m.token != 0 {
		t.Fatalf("token = %d after a stray win", h.m.token)
	}
}

func TestMachinePause(t *testing.T) {
	h := newMH(t, Policy{Checks: []CheckPolicy{{Name: "db", Rise: 1, Fall: 1}}})
	h.start()
	h.step(CheckResult{Index: 0}, Campaign{})
	h.step(Won{Token: 2}, Promote{Token: 2})
	h.step(Promoted{Token: 2}, StartWork{Token: 2, Run: 1})
	h.step(Command{ID: 1, Cmd: CmdPause}, Reply{ID: 1})
	// Paused: a failing check does not step the active member down.
	h.step(CheckResult{Index: 0, Err: errors.New("down")})
	h.role(RoleActive)
	h.step(Command{ID: 2, Cmd: CmdSwitchover}, Reply{ID: 2, Err: ErrPaused})
	// Resuming while unhealthy steps down.
	h.step(Command{ID: 3, Cmd: CmdResume}, CancelTimer{Kind: TimerRestart}, StopWork{Token: 2, Run: 1}, Reply{ID: 3})
	h.role(RoleDemoting)
}

func TestMachinePausedStandbyDoesNotCampaign(t *testing.T) {
	h := newMH(t, Policy{})
	h.start(Campaign{})
	h.step(Command{ID: 1, Cmd: CmdPause}, Reply{ID: 1}, CancelCampaign{})
	h.role(RoleStandby)
	h.step(Command{ID: 2, Cmd: CmdResume}, Reply{ID: 2}, Campaign{})
}

func TestMachineApproval(t *testing.T) {
	h := newMH(t, Policy{RequireApproval: true})
	h.start()
	h.role(RoleStandby)
	h.step(Command{ID: 1, Cmd: CmdApprove}, Reply{ID: 1}, Campaign{})
	h.step(Won{Token: 8}, Promote{Token: 8})
	if h.m.approved {
		t.Fatal("approval not consumed by the takeover")
	}
	h.step(Promoted{Token: 8}, StartWork{Token: 8, Run: 1})
	h.step(TermEnded{Token: 8}, CancelTimer{Kind: TimerRestart}, StopWork{Token: 8, Run: 1})
	h.step(WorkExited{Token: 8, Run: 1}, DemoteSwitch{Token: 8})
	h.step(SwitchDemoted{Token: 8}, Release{Token: 8})
	h.step(Released{Token: 8}) // needs a new approval: no timer, no campaign
	h.role(RoleStandby)

	h2 := newMH(t, Policy{})
	h2.start(Campaign{})
	h2.step(Command{ID: 1, Cmd: CmdApprove}, Reply{ID: 1, Err: ErrApprovalNotRequired})
}

func TestMachineSwitchoverOnActive(t *testing.T) {
	h := newMH(t, Policy{})
	h.toActive(5)
	h.step(Command{ID: 1, Cmd: CmdSwitchover, To: "a"}, Reply{ID: 1}) // already active here
	h.step(Command{ID: 2, Cmd: CmdSwitchover, To: "b"}, CancelTimer{Kind: TimerRestart}, StopWork{Token: 5, Run: 1})
	h.step(Command{ID: 3, Cmd: CmdSwitchover, To: "c"}, Reply{ID: 3, Err: ErrBusy})
	h.step(WorkExited{Token: 5, Run: 1}, DemoteSwitch{Token: 5})
	h.step(SwitchDemoted{Token: 5}, Release{Token: 5, TransferTo: "b"})
	h.step(Released{Token: 5}, Reply{ID: 2}, SetTimer{Kind: TimerHoldOff, D: 5 * time.Second})
	h.role(RoleStandby)
}

func TestMachineSwitchoverOnStandby(t *testing.T) {
	h := newMH(t, Policy{})
	h.start(Campaign{})
	h.step(Command{ID: 1, Cmd: CmdSwitchover, To: "c"}, Reply{ID: 1, Err: fmt.Errorf("ha: switchover: %w", lease.ErrNoLeader)})
	b := lease.Leader{ID: "b", Token: 3, Addr: "b:80"}
	h.step(LeaderChanged{Leader: b})
	h.step(Command{ID: 2, Cmd: CmdSwitchover, To: "c"}, Forward{ID: 2, Leader: b, Cmd: CmdSwitchover, To: "c"})
}

// The zero Cmd is no command: it must not be taken for a switchover (the
// first command once was the zero value).
func TestMachineZeroCommandIsRefused(t *testing.T) {
	h := newMH(t, Policy{})
	h.toActive(5)
	acts := h.m.Step(h.now, Command{ID: 9})
	if len(acts) != 1 {
		t.Fatalf("zero Cmd on the active member: actions %#v, want one Reply", acts)
	}
	r, ok := acts[0].(Reply)
	if !ok || r.ID != 9 || !errors.Is(r.Err, ErrUnknownCommand) {
		t.Fatalf("zero Cmd: %#v, want a Reply to 9 with ErrUnknownCommand", acts[0])
	}
	h.role(RoleActive)
	var zero TimerKind
	var role Role
	var kind EventKind
	if zero == TimerHoldOff || role == RoleStandby || kind == EventRole {
		t.Fatal("an enum's zero value names a timer, role or event kind")
	}
}

func TestMachineStop(t *testing.T) {
	h := newMH(t, Policy{})
	h.toActive(5)
	h.step(Stop{}, CancelTimer{Kind: TimerRestart}, StopWork{Token: 5, Run: 1})
	h.step(WorkExited{Token: 5, Run: 1}, DemoteSwitch{Token: 5})
	h.step(SwitchDemoted{Token: 5}, Release{Token: 5})
	h.step(Released{Token: 5}, Exit{})
	h.role(RoleStopped)

	h2 := newMH(t, Policy{})
	h2.start(Campaign{})
	h2.step(Stop{}, CancelCampaign{}, Exit{})
}

func TestMachinePromotionFailureAndAbort(t *testing.T) {
	h := newMH(t, Policy{})
	h.start(Campaign{})
	h.step(Won{Token: 5}, Promote{Token: 5})
	h.step(Promoted{Token: 5, Err: errors.New("dns down")}, CancelTimer{Kind: TimerRestart}, DemoteSwitch{Token: 5})
	h.step(SwitchDemoted{Token: 5}, Release{Token: 5})
	h.step(Released{Token: 5}, SetTimer{Kind: TimerHoldOff, D: 5 * time.Second})

	// The term ends while promoting: the promotion is cancelled, and the
	// switcher is demoted only after the promotion has returned.
	h.advance(5 * time.Second)
	h.step(TimerFired{Kind: TimerHoldOff}, Campaign{})
	h.step(Won{Token: 6}, Promote{Token: 6})
	h.step(TermEnded{Token: 6}, CancelTimer{Kind: TimerRestart}, CancelPromote{})
	h.step(Promoted{Token: 6, Err: errors.New("cancelled")}, DemoteSwitch{Token: 6})
}

func TestMachineFailback(t *testing.T) {
	h := newMH(t, Policy{Failback: FailbackPolicy{Preferred: "a", Dwell: 30 * time.Second}, Checks: []CheckPolicy{{Name: "c", Rise: 1, Fall: 1}}})
	h.start()
	h.step(CheckResult{Index: 0}, SetTimer{Kind: TimerDwell, D: 30 * time.Second}, Campaign{})
	b := lease.Leader{ID: "b", Token: 3}
	h.step(LeaderChanged{Leader: b})
	h.advance(30 * time.Second)
	h.step(TimerFired{Kind: TimerDwell}, Forward{Leader: b, Cmd: CmdSwitchover, To: "a"})
	h.step(TimerFired{Kind: TimerDwell}) // asked once per leader
	c := lease.Leader{ID: "c", Token: 4}
	h.step(LeaderChanged{Leader: c}, Forward{Leader: c, Cmd: CmdSwitchover, To: "a"})

	// A member that is not preferred never asks.
	h2 := newMH(t, Policy{ID: "b", Failback: FailbackPolicy{Preferred: "a", Dwell: time.Second}})
	h2.start(Campaign{})
	h2.advance(time.Minute)
	h2.step(LeaderChanged{Leader: c})
}

// TestMachineInvariants drives the Machine with random Input sequences and
// checks the invariants the Node's safety rests on after every step.
func TestMachineInvariants(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		p := Policy{ID: "a", HoldOff: time.Second, CampaignRetry: time.Second,
			Restart:           RestartPolicy{Max: rapid.IntRange(-1, 3).Draw(rt, "maxRestarts"), Window: time.Minute, Backoff: time.Second, MaxBackoff: 4 * time.Second},
			RequireApproval:   rapid.Bool().Draw(rt, "approval"),
			SharedMaintenance: rapid.Bool().Draw(rt, "shared"),
			Checks:            []CheckPolicy{{Name: "c", Rise: 1, Fall: 2}},
		}
		m := New(p, t0)
		now := t0
		var (
			nextToken fence.Token = 1
			working   bool        // a work run is live at the edge
			promoting bool
			exited    bool
		)
		apply := func(acts []Action) {
			for _, a := range acts {
				switch a := a.(type) {
				case StartWork:
					if working {
						rt.Fatalf("second work run %d started while one runs", a.Run)
					}
					if m.role != RoleActive {
						rt.Fatalf("work started in role %v", m.role)
					}
					working = true
				case StopWork:
					if !working {
						rt.Fatalf("stop without work")
					}
				case Promote:
					promoting = true
				case DemoteSwitch:
					if working || promoting {
						rt.Fatalf("switcher demoted while work=%v promoting=%v", working, promoting)
					}
				case Exit:
					exited = true
				case WriteMaintenance:
					if m.role != RoleActive || a.Token != m.token {
						rt.Fatalf("maintenance flag written under token %d in role %v (term %d)", a.Token, m.role, m.token)
					}
				}
			}
			inTerm := m.role == RolePromoting || m.role == RoleActive || m.role == RoleDemoting
			if inTerm != (m.token != 0) {
				rt.Fatalf("role %v with token %d", m.role, m.token)
			}
			if m.running && !(m.role == RoleActive || m.role == RoleDemoting) {
				rt.Fatalf("work running in role %v", m.role)
			}
		}
		apply(m.Start(now))
		for i := 0; i < 60 && !exited; i++ {
			now = now.Add(time.Duration(rapid.IntRange(0, 3000).Draw(rt, "ms")) * time.Millisecond)
			var ev Input
			switch rapid.IntRange(0, 13).Draw(rt, "kind") {
			case 0:
				ev = CheckResult{Index: 0, Err: map[bool]error{true: nil, false: errors.New("x")}[rapid.Bool().Draw(rt, "pass")]}
			case 1:
				ev = Won{Token: nextToken}
				nextToken++
			case 2:
				if !promoting {
					continue
				}
				promoting = false
				ev = Promoted{Token: m.token}
			case 3:
				ev = TermEnded{Token: m.token}
			case 4:
				if !working {
					continue
				}
				working = false
				ev = WorkExited{Token: m.token, Run: m.run, Err: errors.New("w")}
			case 5:
				ev = SwitchDemoted{Token: m.token}
			case 6:
				ev = Released{Token: m.token}
			case 7:
				ev = TimerFired{Kind: TimerKind(rapid.IntRange(0, int(NumTimers)-1).Draw(rt, "timer"))}
			case 8:
				ev = Command{ID: 1, Cmd: Cmd(rapid.IntRange(0, 3).Draw(rt, "cmd")), To: "b"}
			case 9:
				ev = LeaderChanged{Leader: lease.Leader{ID: rapid.SampledFrom([]string{"", "a", "b"}).Draw(rt, "leader")}}
			case 10:
				ev = CampaignFailed{Err: errors.New("c")}
			case 12:
				ev = MaintenanceSeen{Paused: rapid.Bool().Draw(rt, "sharedPaused")}
			case 13:
				ev = MaintenanceWritten{Paused: rapid.Bool().Draw(rt, "written")}
			case 11:
				if rapid.IntRange(0, 9).Draw(rt, "stop") == 0 {
					ev = Stop{}
				} else {
					continue
				}
			}
			apply(m.Step(now, ev))
		}
	})
}

func TestMachineSharedMaintenance(t *testing.T) {
	// The active member writes the shared flag under its token.
	h := newMH(t, Policy{SharedMaintenance: true})
	h.toActive(5)
	h.step(Command{ID: 1, Cmd: CmdPause}, WriteMaintenance{ID: 1, Token: 5, Paused: true})
	if h.m.Status().Paused {
		t.Fatal("paused before the flag was written")
	}
	h.step(MaintenanceWritten{ID: 1, Paused: true}, Reply{ID: 1})
	if !h.m.Status().Paused {
		t.Fatal("not paused after the flag was written")
	}
	stale := errors.New("stale")
	h.step(Command{ID: 2, Cmd: CmdResume}, WriteMaintenance{ID: 2, Token: 5, Paused: false})
	h.step(MaintenanceWritten{ID: 2, Err: stale}, Reply{ID: 2, Err: stale})
	if !h.m.Status().Paused {
		t.Fatal("a failed write resumed")
	}

	// A standby forwards to the leader, and follows the flag it reads.
	h2 := newMH(t, Policy{SharedMaintenance: true})
	h2.start(Campaign{})
	b := lease.Leader{ID: "b", Token: 3}
	h2.step(LeaderChanged{Leader: b})
	h2.step(Command{ID: 1, Cmd: CmdPause}, Forward{ID: 1, Leader: b, Cmd: CmdPause})
	h2.step(MaintenanceSeen{Paused: true}, CancelCampaign{})
	h2.role(RoleStandby)
	h2.step(MaintenanceSeen{Paused: false}, Campaign{})

	// The active member died during maintenance: nobody leads and nobody
	// campaigns. A Resume here overrides the flag; once active, this
	// member clears it for everyone.
	h3 := newMH(t, Policy{SharedMaintenance: true})
	h3.start(Campaign{})
	h3.step(MaintenanceSeen{Paused: true}, CancelCampaign{})
	h3.step(Command{ID: 1, Cmd: CmdResume}, Reply{ID: 1}, Campaign{})
	h3.step(Won{Token: 9}, Promote{Token: 9})
	h3.step(Promoted{Token: 9}, StartWork{Token: 9, Run: 1}, WriteMaintenance{Token: 9, Paused: false})
	h3.step(MaintenanceWritten{Paused: false})
	h3.step(MaintenanceSeen{Paused: false})
	if h3.m.override || h3.m.Status().Paused {
		t.Fatalf("after clearing: override=%v paused=%v", h3.m.override, h3.m.Status().Paused)
	}
}
