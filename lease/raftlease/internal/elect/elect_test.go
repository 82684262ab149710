package elect

import (
	"reflect"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const (
	self  = 1
	peerB = 2
	peerC = 3
)

func params() Params {
	return Params{Self: self, FenceWindow: 800 * time.Millisecond, Resend: 450 * time.Millisecond}
}

// leading is the view of this member leading Raft term 5 with two active
// voters, c further ahead than b, neither a candidate.
func leading() View {
	return View{
		Now: t0, Leader: true, Term: 5, Lead: self,
		Peers: []Peer{
			{ID: peerB, Match: 10, Active: true, Voter: true},
			{ID: peerC, Match: 12, Active: true, Voter: true},
		},
	}
}

func following() View {
	return View{Now: t0, Term: 5, Lead: peerB}
}

type step struct {
	name string
	view func(View) View // edits the base view
	want []Action
}

// run feeds the steps in order to one Elector and checks each step's
// actions.
func run(t *testing.T, e *Elector, base View, steps []step) {
	t.Helper()
	for i, s := range steps {
		v := base
		if s.view != nil {
			v = s.view(v)
		}
		got := e.Step(v)
		if len(got) == 0 && len(s.want) == 0 {
			continue
		}
		if !reflect.DeepEqual(got, s.want) {
			t.Fatalf("step %d (%s):\n got  %#v\n want %#v", i, s.name, got, s.want)
		}
	}
}

func TestGrantNeedsHolderRecordAndQuorum(t *testing.T) {
	e := New(params())
	run(t, e, leading(), []step{
		{"a Campaign waits: announce candidacy and the holder record", func(v View) View {
			v.Waiting = true
			return v
		}, []Action{ProposeCandidate{On: true}, ProposeHolder{Term: 5}}},
		{"holder record not applied yet: nothing new", func(v View) View {
			v.Waiting, v.Candidate = true, true
			return v
		}, nil},
		{"holder applied, no quorum acknowledgement yet: wait", func(v View) View {
			v.Waiting, v.Candidate, v.Holder = true, true, Holder{self, 5}
			return v
		}, nil},
		{"an acknowledgement too old to leave any time: wait", func(v View) View {
			v.Waiting, v.Candidate, v.Holder = true, true, Holder{self, 5}
			v.QuorumAck = t0.Add(-800 * time.Millisecond)
			return v
		}, nil},
		{"a fresh acknowledgement: grant, deadline = ack + window", func(v View) View {
			v.Waiting, v.Candidate, v.Holder = true, true, Holder{self, 5}
			v.QuorumAck = t0.Add(-100 * time.Millisecond)
			return v
		}, []Action{Grant{Term: 5, Deadline: t0.Add(700 * time.Millisecond)}}},
	})
	if e.Held() != 5 {
		t.Fatalf("Held = %d after the grant", e.Held())
	}
}

func TestHolderRecordOfAnEarlierTermIsNotEnough(t *testing.T) {
	e := New(params())
	v := leading()
	v.Waiting, v.Candidate, v.Holder, v.QuorumAck = true, true, Holder{self, 4}, t0
	if got, want := e.Step(v), []Action{ProposeHolder{Term: 5}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v, want %#v", got, want)
	}
}

func TestDroppedProposalIsMadeAgain(t *testing.T) {
	e := New(params())
	v := leading()
	v.Waiting, v.Candidate = true, true
	first := e.Step(v)
	if !reflect.DeepEqual(first, []Action{ProposeHolder{Term: 5}}) {
		t.Fatalf("first step %#v", first)
	}
	if got := e.Step(v); len(got) != 0 {
		t.Fatalf("proposed twice without a drop: %#v", got)
	}
	e.Dropped(first[0])
	if got := e.Step(v); !reflect.DeepEqual(got, first) {
		t.Fatalf("after the drop: %#v, want %#v", got, first)
	}
}

func TestHeldTermEndsWithLeadership(t *testing.T) {
	for _, tc := range []struct {
		name string
		view View
	}{
		{"stepped down", following()},
		{"new term while leading", func() View { v := leading(); v.Term = 6; return v }()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := granted(t)
			got := e.Step(tc.view)
			if len(got) == 0 {
				t.Fatal("no action")
			}
			if end, ok := got[0].(EndTerm); !ok || end.Term != 5 {
				t.Fatalf("first action %#v, want EndTerm of term 5", got[0])
			}
			if e.Held() != 0 {
				t.Fatalf("Held = %d after the end", e.Held())
			}
		})
	}
}

// granted returns an Elector that holds a Term of Raft term 5.
func granted(t *testing.T) *Elector {
	t.Helper()
	e := New(params())
	v := leading()
	v.Waiting, v.Candidate, v.Holder, v.QuorumAck = true, true, Holder{self, 5}, t0
	if got := e.Step(v); len(got) != 1 {
		t.Fatalf("grant step: %#v", got)
	}
	return e
}

func TestOneTermPerRaftTerm(t *testing.T) {
	e := granted(t)
	e.Released(5) // resigned or deadline passed
	v := leading()
	v.Waiting, v.Candidate, v.Holder, v.QuorumAck = true, true, Holder{self, 5}, t0
	v.Peers[0].Candidate = true
	got := e.Step(v)
	want := []Action{Transfer{To: peerB, Why: "transferring leadership"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("second Campaign in the same Raft term: %#v, want %#v", got, want)
	}
}

func TestLeaderWithoutCampaignHandsToBestCandidate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		peers []Peer
		want  []Action
	}{
		{"no candidate: keep leading", leading().Peers, nil},
		{"one candidate", []Peer{
			{ID: peerB, Match: 10, Active: true, Voter: true, Candidate: true},
			{ID: peerC, Match: 12, Active: true, Voter: true},
		}, []Action{Transfer{To: peerB, Why: "handing leadership to a candidate"}}},
		{"the most up-to-date candidate", []Peer{
			{ID: peerB, Match: 10, Active: true, Voter: true, Candidate: true},
			{ID: peerC, Match: 12, Active: true, Voter: true, Candidate: true},
		}, []Action{Transfer{To: peerC, Why: "handing leadership to a candidate"}}},
		{"tie: the lower ID", []Peer{
			{ID: peerC, Match: 12, Active: true, Voter: true, Candidate: true},
			{ID: peerB, Match: 12, Active: true, Voter: true, Candidate: true},
		}, []Action{Transfer{To: peerB, Why: "handing leadership to a candidate"}}},
		{"an inactive candidate is passed over", []Peer{
			{ID: peerB, Match: 10, Active: false, Voter: true, Candidate: true},
		}, nil},
		{"a candidate that is not a voter is passed over", []Peer{
			{ID: peerB, Match: 10, Active: true, Voter: false, Candidate: true},
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := leading()
			v.Peers = tc.peers
			if got := New(params()).Step(v); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %#v, want %#v", got, tc.want)
			}
		})
	}
}

func TestNothingWhileTransferring(t *testing.T) {
	v := leading()
	v.Transferring = true
	v.Peers[0].Candidate = true
	if got := New(params()).Step(v); len(got) != 0 {
		t.Fatalf("acted during a transfer: %#v", got)
	}
}

func TestCandidacyFlag(t *testing.T) {
	e := New(params())
	run(t, e, following(), []step{
		{"wants the lease, log says no: propose", func(v View) View { v.Waiting = true; return v }, []Action{ProposeCandidate{On: true}}},
		{"again within Resend: wait", func(v View) View {
			v.Waiting, v.Now = true, t0.Add(400*time.Millisecond)
			return v
		}, nil},
		{"after Resend: propose again", func(v View) View {
			v.Waiting, v.Now = true, t0.Add(450*time.Millisecond)
			return v
		}, []Action{ProposeCandidate{On: true}}},
		{"log agrees: nothing", func(v View) View {
			v.Waiting, v.Candidate, v.Now = true, true, t0.Add(time.Second)
			return v
		}, nil},
		{"no longer wants it: withdraw", func(v View) View {
			v.Candidate, v.Now = true, t0.Add(2*time.Second)
			return v
		}, []Action{ProposeCandidate{On: false}}},
		{"no leader to propose to: nothing", func(v View) View {
			v.Candidate, v.Lead, v.Now = true, 0, t0.Add(3*time.Second)
			return v
		}, nil},
	})
}

func TestWithdrawIgnoresResend(t *testing.T) {
	e := New(params())
	v := following()
	v.Waiting = true
	e.Step(v)
	v.Waiting, v.Candidate = false, true
	if got, want := e.Withdraw(v), []Action{ProposeCandidate{On: false}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Withdraw = %#v, want %#v", got, want)
	}
	v.Candidate = false
	if got := e.Withdraw(v); len(got) != 0 {
		t.Fatalf("Withdraw of a non-candidate = %#v", got)
	}
}

func TestTransferAwayPrefersCandidates(t *testing.T) {
	e := New(params())
	v := leading()
	if got, want := e.TransferAway(v), []Action{Transfer{To: peerC, Why: "transferring leadership"}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("no candidate: %#v, want the most up-to-date voter %#v", got, want)
	}
	v.Peers[0].Candidate = true
	if got, want := e.TransferAway(v), []Action{Transfer{To: peerB, Why: "transferring leadership"}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("with a candidate: %#v, want %#v", got, want)
	}
	v.Peers = nil
	if got := e.TransferAway(v); len(got) != 0 {
		t.Fatalf("alone: %#v", got)
	}
	if got := e.TransferAway(following()); len(got) != 0 {
		t.Fatalf("as a follower: %#v", got)
	}
}

func TestHandOverEndsTermAndUsesTheRaftTerm(t *testing.T) {
	e := granted(t)
	v := leading()
	got := e.HandOver(v, peerC)
	want := []Action{EndTerm{Term: 5, Reason: "handed over"}, Transfer{To: peerC, Why: "handing the lease over"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("HandOver = %#v, want %#v", got, want)
	}
	// Leadership did not move (the target was slow): this term grants
	// nothing more here.
	v.Waiting, v.Candidate, v.Holder, v.QuorumAck = true, true, Holder{self, 5}, t0
	if acts := e.Step(v); len(acts) != 1 {
		t.Fatalf("after HandOver: %#v", acts)
	} else if _, ok := acts[0].(Transfer); !ok {
		t.Fatalf("after HandOver: %#v, want a transfer", acts)
	}
}

func TestDeadline(t *testing.T) {
	e := New(params())
	if d := e.Deadline(time.Time{}); !d.IsZero() {
		t.Fatalf("Deadline(zero) = %v", d)
	}
	if d := e.Deadline(t0); !d.Equal(t0.Add(800 * time.Millisecond)) {
		t.Fatalf("Deadline = %v", d)
	}
}
