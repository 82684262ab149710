package ha

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
	m   *machine
	now time.Time
}

func newMH(t *testing.T, p policy) *mh {
	t.Helper()
	if p.id == "" {
		p.id = "a"
	}
	if p.holdOff == 0 {
		p.holdOff = 5 * time.Second
	}
	if p.campaignRetry == 0 {
		p.campaignRetry = time.Second
	}
	if p.restart == (RestartPolicy{}) {
		p.restart = RestartPolicy{Max: 3, Window: time.Minute, Backoff: 100 * time.Millisecond, MaxBackoff: 5 * time.Second}
	}
	for i := range p.checks {
		p.checks[i] = p.checks[i].withDefaults()
	}
	return &mh{t: t, m: newMachine(p, t0), now: t0}
}

// quiet drops emitted events, which most tests do not look at.
func quiet(acts []action) []action {
	var out []action
	for _, a := range acts {
		if _, ok := a.(actEmit); !ok {
			out = append(out, a)
		}
	}
	return out
}

func (h *mh) start(want ...action) {
	h.t.Helper()
	h.check("start", quiet(h.m.start(h.now)), want)
}

func (h *mh) step(ev event, want ...action) {
	h.t.Helper()
	h.check(fmt.Sprintf("%T%+v", ev, ev), quiet(h.m.step(h.now, ev)), want)
}

func (h *mh) check(what string, got, want []action) {
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
	h.start(actCampaign{})
	h.step(evWon{token: t}, actPromote{token: t})
	h.step(evPromoted{token: t}, actStartWork{token: t, run: 1})
	h.role(RoleActive)
}

func TestMachineLifecycle(t *testing.T) {
	h := newMH(t, policy{})
	h.toActive(7)
	// The lease is lost: stop the work, then demote, then release, in order.
	lost := fmt.Errorf("expired: %w", lease.ErrLost)
	h.step(evTermEnded{token: 7, err: lost}, actCancelTimer{kind: timerRestart}, actStopWork{token: 7, run: 1})
	h.role(RoleDemoting)
	h.step(evWorkExited{token: 7, run: 1, err: errWorkCancelled}, actDemoteSwitch{token: 7})
	h.step(evSwitchDemoted{token: 7}, actRelease{token: 7})
	h.step(evReleased{token: 7}, actSetTimer{kind: timerHoldOff, d: 5 * time.Second})
	h.role(RoleStandby)
	if !errors.Is(h.m.lastErr, lease.ErrLost) {
		t.Fatalf("lastErr = %v, want ErrLost", h.m.lastErr)
	}
	h.advance(5 * time.Second)
	h.step(evTimer{kind: timerHoldOff}, actCampaign{})
	h.role(RoleCampaigning)
	h.step(evWon{token: 9}, actPromote{token: 9})
}

func TestMachineIgnoresStaleEvents(t *testing.T) {
	h := newMH(t, policy{})
	h.toActive(7)
	h.step(evTermEnded{token: 6})
	h.step(evWorkExited{token: 7, run: 0})
	h.step(evPromoted{token: 7})
	h.step(evReleased{token: 7})
	h.step(evSwitchDemoted{token: 7})
	h.role(RoleActive)
}

func TestMachineRestartPolicy(t *testing.T) {
	h := newMH(t, policy{})
	h.toActive(3)
	boom := errors.New("boom")
	for i, d := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond} {
		h.step(evWorkExited{token: 3, run: i + 1, err: boom}, actSetTimer{kind: timerRestart, d: d})
		h.advance(d)
		h.step(evTimer{kind: timerRestart}, actStartWork{token: 3, run: i + 2})
	}
	// The fourth failure within the window steps down.
	h.step(evWorkExited{token: 3, run: 4, err: boom}, actCancelTimer{kind: timerRestart}, actDemoteSwitch{token: 3})
	h.role(RoleDemoting)
	if !errors.Is(h.m.lastErr, boom) {
		t.Fatalf("lastErr = %v", h.m.lastErr)
	}
}

func TestMachineRestartWindowSlides(t *testing.T) {
	h := newMH(t, policy{restart: RestartPolicy{Max: 1, Window: time.Minute, Backoff: time.Second, MaxBackoff: time.Second}})
	h.toActive(3)
	for run := 1; run <= 5; run++ {
		// A nil return while active is a failure too.
		h.step(evWorkExited{token: 3, run: run}, actSetTimer{kind: timerRestart, d: time.Second})
		h.advance(2 * time.Minute)
		h.step(evTimer{kind: timerRestart}, actStartWork{token: 3, run: run + 1})
	}
	if !errors.Is(h.m.lastErr, ErrWorkExited) {
		t.Fatalf("lastErr = %v, want ErrWorkExited", h.m.lastErr)
	}
}

func TestMachineNoRestarts(t *testing.T) {
	h := newMH(t, policy{restart: RestartPolicy{Max: -1, Window: time.Minute, Backoff: time.Second, MaxBackoff: time.Second}})
	h.toActive(3)
	h.step(evWorkExited{token: 3, run: 1, err: errors.New("x")}, actCancelTimer{kind: timerRestart}, actDemoteSwitch{token: 3})
}

func TestMachineHealthHysteresis(t *testing.T) {
	h := newMH(t, policy{checks: []Check{{Name: "db", Rise: 2, Fall: 3}}})
	h.start() // no result yet: unhealthy, no campaign
	h.role(RoleStandby)
	fail := errors.New("down")
	h.step(evCheck{index: 0, err: fail})
	h.role(RoleStandby)
	h.step(evCheck{index: 0}) // after a first failure, one pass is not enough
	h.role(RoleStandby)
	h.step(evCheck{index: 0}, actCampaign{})
	h.role(RoleCampaigning)
}

func TestMachineUnhealthyActiveStepsDown(t *testing.T) {
	h := newMH(t, policy{checks: []Check{{Name: "db", Rise: 2, Fall: 3}}})
	h.start()
	h.step(evCheck{index: 0}, actCampaign{})
	h.step(evWon{token: 4}, actPromote{token: 4})
	h.step(evPromoted{token: 4}, actStartWork{token: 4, run: 1})
	fail := errors.New("down")
	h.step(evCheck{index: 0, err: fail})
	h.step(evCheck{index: 0}) // a pass resets the streak
	h.step(evCheck{index: 0, err: fail})
	h.step(evCheck{index: 0, err: fail})
	h.role(RoleActive)
	h.step(evCheck{index: 0, err: fail}, actCancelTimer{kind: timerRestart}, actStopWork{token: 4, run: 1})
	h.role(RoleDemoting)
	h.step(evWorkExited{token: 4, run: 1, err: errWorkCancelled}, actDemoteSwitch{token: 4})
	h.step(evSwitchDemoted{token: 4}, actRelease{token: 4})
	// Unhealthy: no campaign, no hold-off timer needed yet.
	h.step(evReleased{token: 4})
	h.role(RoleStandby)
	// Healthy again (two passes) but holding off.
	h.step(evCheck{index: 0})
	h.step(evCheck{index: 0}, actSetTimer{kind: timerHoldOff, d: 5 * time.Second})
	h.advance(5 * time.Second)
	h.step(evTimer{kind: timerHoldOff}, actCampaign{})
}

func TestMachineUnhealthyCampaignerWithdraws(t *testing.T) {
	h := newMH(t, policy{checks: []Check{{Name: "db", Rise: 1, Fall: 1}}})
	h.start()
	h.step(evCheck{index: 0}, actCampaign{})
	h.step(evCheck{index: 0, err: errors.New("down")}, actCancelCampaign{})
	h.role(RoleStandby)
	// The withdrawn campaign won anyway: the term is given back at once.
	h.step(evWon{token: 5}, actResignStray{token: 5})
	h.role(RoleStandby)
	if h.m.token != 0 {
		t.Fatalf("token = %d after a stray win", h.m.token)
	}
}

func TestMachinePause(t *testing.T) {
	h := newMH(t, policy{checks: []Check{{Name: "db", Rise: 1, Fall: 1}}})
	h.start()
	h.step(evCheck{index: 0}, actCampaign{})
	h.step(evWon{token: 2}, actPromote{token: 2})
	h.step(evPromoted{token: 2}, actStartWork{token: 2, run: 1})
	h.step(evCommand{id: 1, cmd: cmdPause}, actReply{id: 1})
	// Paused: a failing check does not step the active member down.
	h.step(evCheck{index: 0, err: errors.New("down")})
	h.role(RoleActive)
	h.step(evCommand{id: 2, cmd: cmdSwitchover}, actReply{id: 2, err: ErrPaused})
	// Resuming while unhealthy steps down.
	h.step(evCommand{id: 3, cmd: cmdResume}, actCancelTimer{kind: timerRestart}, actStopWork{token: 2, run: 1}, actReply{id: 3})
	h.role(RoleDemoting)
}

func TestMachinePausedStandbyDoesNotCampaign(t *testing.T) {
	h := newMH(t, policy{})
	h.start(actCampaign{})
	h.step(evCommand{id: 1, cmd: cmdPause}, actReply{id: 1}, actCancelCampaign{})
	h.role(RoleStandby)
	h.step(evCommand{id: 2, cmd: cmdResume}, actReply{id: 2}, actCampaign{})
}

func TestMachineApproval(t *testing.T) {
	h := newMH(t, policy{requireApproval: true})
	h.start()
	h.role(RoleStandby)
	h.step(evCommand{id: 1, cmd: cmdApprove}, actReply{id: 1}, actCampaign{})
	h.step(evWon{token: 8}, actPromote{token: 8})
	if h.m.approved {
		t.Fatal("approval not consumed by the takeover")
	}
	h.step(evPromoted{token: 8}, actStartWork{token: 8, run: 1})
	h.step(evTermEnded{token: 8}, actCancelTimer{kind: timerRestart}, actStopWork{token: 8, run: 1})
	h.step(evWorkExited{token: 8, run: 1}, actDemoteSwitch{token: 8})
	h.step(evSwitchDemoted{token: 8}, actRelease{token: 8})
	h.step(evReleased{token: 8}) // needs a new approval: no timer, no campaign
	h.role(RoleStandby)

	h2 := newMH(t, policy{})
	h2.start(actCampaign{})
	h2.step(evCommand{id: 1, cmd: cmdApprove}, actReply{id: 1, err: ErrApprovalNotRequired})
}

func TestMachineSwitchoverOnActive(t *testing.T) {
	h := newMH(t, policy{})
	h.toActive(5)
	h.step(evCommand{id: 1, cmd: cmdSwitchover, to: "a"}, actReply{id: 1}) // already active here
	h.step(evCommand{id: 2, cmd: cmdSwitchover, to: "b"}, actCancelTimer{kind: timerRestart}, actStopWork{token: 5, run: 1})
	h.step(evCommand{id: 3, cmd: cmdSwitchover, to: "c"}, actReply{id: 3, err: ErrBusy})
	h.step(evWorkExited{token: 5, run: 1}, actDemoteSwitch{token: 5})
	h.step(evSwitchDemoted{token: 5}, actRelease{token: 5, transferTo: "b"})
	h.step(evReleased{token: 5}, actReply{id: 2}, actSetTimer{kind: timerHoldOff, d: 5 * time.Second})
	h.role(RoleStandby)
}

func TestMachineSwitchoverOnStandby(t *testing.T) {
	h := newMH(t, policy{})
	h.start(actCampaign{})
	h.step(evCommand{id: 1, cmd: cmdSwitchover, to: "c"}, actReply{id: 1, err: fmt.Errorf("ha: switchover: %w", lease.ErrNoLeader)})
	b := lease.Leader{ID: "b", Token: 3, Addr: "b:80"}
	h.step(evLeader{leader: b})
	h.step(evCommand{id: 2, cmd: cmdSwitchover, to: "c"}, actForward{id: 2, leader: b, to: "c"})
}

func TestMachineStop(t *testing.T) {
	h := newMH(t, policy{})
	h.toActive(5)
	h.step(evStop{}, actCancelTimer{kind: timerRestart}, actStopWork{token: 5, run: 1})
	h.step(evWorkExited{token: 5, run: 1}, actDemoteSwitch{token: 5})
	h.step(evSwitchDemoted{token: 5}, actRelease{token: 5})
	h.step(evReleased{token: 5}, actExit{})
	h.role(RoleStopped)

	h2 := newMH(t, policy{})
	h2.start(actCampaign{})
	h2.step(evStop{}, actCancelCampaign{}, actExit{})
}

func TestMachinePromotionFailureAndAbort(t *testing.T) {
	h := newMH(t, policy{})
	h.start(actCampaign{})
	h.step(evWon{token: 5}, actPromote{token: 5})
	h.step(evPromoted{token: 5, err: errors.New("dns down")}, actCancelTimer{kind: timerRestart}, actDemoteSwitch{token: 5})
	h.step(evSwitchDemoted{token: 5}, actRelease{token: 5})
	h.step(evReleased{token: 5}, actSetTimer{kind: timerHoldOff, d: 5 * time.Second})

	// The term ends while promoting: the promotion is cancelled, and the
	// switcher is demoted only after the promotion has returned.
	h.advance(5 * time.Second)
	h.step(evTimer{kind: timerHoldOff}, actCampaign{})
	h.step(evWon{token: 6}, actPromote{token: 6})
	h.step(evTermEnded{token: 6}, actCancelTimer{kind: timerRestart}, actCancelPromote{})
	h.step(evPromoted{token: 6, err: errors.New("cancelled")}, actDemoteSwitch{token: 6})
}

func TestMachineFailback(t *testing.T) {
	h := newMH(t, policy{failback: FailbackPolicy{Preferred: "a", Dwell: 30 * time.Second}, checks: []Check{{Name: "c", Rise: 1, Fall: 1}}})
	h.start()
	h.step(evCheck{index: 0}, actSetTimer{kind: timerDwell, d: 30 * time.Second}, actCampaign{})
	b := lease.Leader{ID: "b", Token: 3}
	h.step(evLeader{leader: b})
	h.advance(30 * time.Second)
	h.step(evTimer{kind: timerDwell}, actForward{leader: b, to: "a"})
	h.step(evTimer{kind: timerDwell}) // asked once per leader
	c := lease.Leader{ID: "c", Token: 4}
	h.step(evLeader{leader: c}, actForward{leader: c, to: "a"})

	// A member that is not preferred never asks.
	h2 := newMH(t, policy{id: "b", failback: FailbackPolicy{Preferred: "a", Dwell: time.Second}})
	h2.start(actCampaign{})
	h2.advance(time.Minute)
	h2.step(evLeader{leader: c})
}

// TestMachineInvariants drives the machine with random event sequences and
// checks the invariants the Node's safety rests on after every step.
func TestMachineInvariants(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		p := policy{id: "a", holdOff: time.Second, campaignRetry: time.Second,
			restart:         RestartPolicy{Max: rapid.IntRange(-1, 3).Draw(rt, "maxRestarts"), Window: time.Minute, Backoff: time.Second, MaxBackoff: 4 * time.Second},
			requireApproval: rapid.Bool().Draw(rt, "approval"),
			checks:          []Check{{Name: "c", Rise: 1, Fall: 2}},
		}
		m := newMachine(p, t0)
		now := t0
		var (
			nextToken fence.Token = 1
			working   bool        // a work run is live at the edge
			promoting bool
			exited    bool
		)
		apply := func(acts []action) {
			for _, a := range acts {
				switch a := a.(type) {
				case actStartWork:
					if working {
						rt.Fatalf("second work run %d started while one runs", a.run)
					}
					if m.role != RoleActive {
						rt.Fatalf("work started in role %v", m.role)
					}
					working = true
				case actStopWork:
					if !working {
						rt.Fatalf("stop without work")
					}
				case actPromote:
					promoting = true
				case actDemoteSwitch:
					if working || promoting {
						rt.Fatalf("switcher demoted while work=%v promoting=%v", working, promoting)
					}
				case actExit:
					exited = true
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
		apply(m.start(now))
		for i := 0; i < 60 && !exited; i++ {
			now = now.Add(time.Duration(rapid.IntRange(0, 3000).Draw(rt, "ms")) * time.Millisecond)
			var ev event
			switch rapid.IntRange(0, 11).Draw(rt, "kind") {
			case 0:
				ev = evCheck{index: 0, err: map[bool]error{true: nil, false: errors.New("x")}[rapid.Bool().Draw(rt, "pass")]}
			case 1:
				ev = evWon{token: nextToken}
				nextToken++
			case 2:
				if !promoting {
					continue
				}
				promoting = false
				ev = evPromoted{token: m.token}
			case 3:
				ev = evTermEnded{token: m.token}
			case 4:
				if !working {
					continue
				}
				working = false
				ev = evWorkExited{token: m.token, run: m.run, err: errors.New("w")}
			case 5:
				ev = evSwitchDemoted{token: m.token}
			case 6:
				ev = evReleased{token: m.token}
			case 7:
				ev = evTimer{kind: timerKind(rapid.IntRange(0, int(numTimers)-1).Draw(rt, "timer"))}
			case 8:
				ev = evCommand{id: 1, cmd: command(rapid.IntRange(0, 3).Draw(rt, "cmd")), to: "b"}
			case 9:
				ev = evLeader{leader: lease.Leader{ID: rapid.SampledFrom([]string{"", "a", "b"}).Draw(rt, "leader")}}
			case 10:
				ev = evCampaignFailed{err: errors.New("c")}
			case 11:
				if rapid.IntRange(0, 9).Draw(rt, "stop") == 0 {
					ev = evStop{}
				} else {
					continue
				}
			}
			apply(m.step(now, ev))
		}
	})
}
