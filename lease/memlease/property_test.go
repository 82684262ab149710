package memlease

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/lease"
	"github.com/hakit/hakit/lease/clock"
)

// TestRandomFaults drives an election through random campaigns,
// resignations, closes, cut-offs, pauses and time steps on a Fake, and
// checks the lease contract at every instant the lease changes hands (from
// OnChange, with the election's lock held, looking at every member's own
// state):
//
//   - a grant finds every other member's term ended, unless that member is
//     paused (the window fencing tokens cover);
//   - tokens strictly increase;
//   - whenever the election counts a member whose own term has ended,
//     that member is cut off or closed (it could not tell the election);
//   - an observer that is never faulted sees exactly the sequence of
//     changes;
//   - once every fault is healed, a waiting campaign wins within one TTL.
//
// rapid prints the failing sequence of steps and how to replay it.
func TestRandomFaults(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		(&model{}).run(rt)
	})
}

type model struct {
	rt  *rapid.T
	f   *clock.Fake
	e   *Election
	ids []string

	mu        sync.Mutex // guards the fields below, written from OnChange
	changes   []lease.Leader
	last      fence.Token
	violation string

	members map[string]*Elector
	wg      sync.WaitGroup
}

const modelTTL = time.Second

func (x *model) run(rt *rapid.T) {
	x.rt = rt
	x.f = clock.NewFake(epoch)
	x.ids = []string{"a", "b", "c"}
	x.members = map[string]*Elector{}
	e, err := NewElection(x.f, Options{TTL: modelTTL, DriftMargin: 100 * time.Millisecond, RenewInterval: 300 * time.Millisecond, OnChange: x.onChange})
	if err != nil {
		rt.Fatal(err)
	}
	x.e = e
	for _, id := range x.ids {
		x.add(id)
	}
	watch, _ := e.Member("watch", "")
	ctx, cancel := context.WithCancel(context.Background())
	observed := watch.Observe(ctx)
	defer func() {
		cancel()
		watch.Close()
		for _, m := range x.members {
			m.Close()
		}
		x.wg.Wait()
	}()

	steps := rapid.IntRange(1, 60).Draw(rt, "steps")
	for range steps {
		id := rapid.SampledFrom(x.ids).Draw(rt, "member")
		m := x.members[id]
		switch op := rapid.IntRange(0, 9).Draw(rt, "op"); op {
		case 0, 1:
			x.campaign(m)
		case 2:
			x.e.mu.Lock()
			t := m.term
			x.e.mu.Unlock()
			if t != nil {
				t.Resign(context.Background())
			}
		case 3:
			x.e.Isolate(id)
		case 4:
			x.e.Heal(id)
		case 5:
			x.e.Pause(id)
		case 6:
			x.e.Resume(id)
		case 7:
			m.Close()
			x.add(id)
		default:
			d := time.Duration(rapid.IntRange(0, int(2*modelTTL/time.Millisecond)).Draw(rt, "ms")) * time.Millisecond
			x.f.Advance(d)
		}
		x.checkHolder()
		if v := x.failed(); v != "" {
			rt.Fatal(v)
		}
	}

	// Heal everything: a waiting campaign must win within one TTL.
	for _, id := range x.ids {
		x.e.Heal(id)
		x.e.Resume(id)
	}
	x.f.Advance(modelTTL)
	if len(x.e.Waiting()) > 0 && x.e.Holder().IsZero() {
		rt.Fatalf("campaigns %q wait with every fault healed and no holder after a TTL", x.e.Waiting())
	}
	if v := x.failed(); v != "" {
		rt.Fatal(v)
	}

	// The unfaulted observer saw the initial "no leader" and then every
	// change.
	x.mu.Lock()
	want := append([]lease.Leader{{}}, x.changes...)
	x.mu.Unlock()
	var got []lease.Leader
	timeout := time.After(10 * time.Second)
	for len(got) < len(want) {
		select {
		case l := <-observed:
			got = append(got, l)
		case <-timeout:
			rt.Fatalf("observer delivered %v, want %v", got, want)
		}
	}
	if !slices.Equal(got, want) {
		rt.Fatalf("observer delivered %v, want %v", got, want)
	}
}

func (x *model) add(id string) {
	m, err := x.e.Member(id, id+":1")
	if err != nil {
		x.rt.Fatal(err)
	}
	x.members[id] = m
}

// campaign starts a Campaign of m unless it holds a term or campaigns, and
// waits until the election has queued or granted it, so that the order of
// campaigns is the order of steps.
func (x *model) campaign(m *Elector) {
	x.e.mu.Lock()
	busy := m.term != nil || m.req != nil || m.closed
	x.e.mu.Unlock()
	if busy {
		return
	}
	x.wg.Add(1)
	go func() {
		defer x.wg.Done()
		m.Campaign(context.Background()) // ends at the latest when the run closes m
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		x.e.mu.Lock()
		started := m.req != nil || m.term != nil
		x.e.mu.Unlock()
		if started {
			return
		}
		if time.Now().After(deadline) {
			x.rt.Fatalf("campaign of %s never reached the election", m.id)
		}
		time.Sleep(100 * time.Microsecond) // polling, with a deadline, for the goroutine to enqueue
	}
}

// onChange runs with e.mu held, so it may read every member's state.
func (x *model) onChange(l lease.Leader) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.changes = append(x.changes, l)
	if l.IsZero() {
		return
	}
	if l.Token <= x.last {
		x.fail("member %s granted token %d, not above the previous %d", l.ID, l.Token, x.last)
	}
	x.last = l.Token
	for id, m := range x.e.members {
		if id != l.ID && m.term != nil && !m.paused {
			x.fail("member %s granted token %d while running member %s still holds term %d", l.ID, l.Token, id, m.term.token)
		}
	}
}

// checkHolder checks that the election counts a member whose own term has
// ended only if that member could not tell it.
func (x *model) checkHolder() {
	x.e.mu.Lock()
	defer x.e.mu.Unlock()
	h := x.e.holder
	if h == nil || h.m.term == h || h.m.cut || h.m.closed {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.fail("the election counts member %s's term %d, which the member ended (%v) though it can reach the election", h.m.id, h.token, h.err)
}

// fail records the first violation; x.mu must be held.
func (x *model) fail(format string, args ...any) {
	if x.violation == "" {
		x.violation = fmt.Sprintf("at %v: ", x.f.Now().Sub(epoch)) + fmt.Sprintf(format, args...)
	}
}

func (x *model) failed() string {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.violation
}
