package raftlease

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/lease"
)

// win is a Term some member's campaign loop won.
type win struct {
	id   string
	term lease.Term
	at   time.Time
}

// campaignLoops makes every running member campaign again and again, as
// an ha.Node would, and reports every Term won on the returned channel.
func (c *cluster) campaignLoops(ctx context.Context) <-chan win {
	ch := make(chan win, 64)
	var wg sync.WaitGroup
	for id, g := range c.groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				term, err := g.Campaign(ctx)
				if err != nil {
					return
				}
				select {
				case ch <- win{id: id, term: term, at: time.Now()}:
				case <-ctx.Done():
					return
				}
				select {
				case <-term.Done():
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	c.t.Cleanup(wg.Wait)
	return ch
}

func nextWin(t *testing.T, ch <-chan win, d time.Duration, what string) win {
	t.Helper()
	select {
	case w := <-ch:
		return w
	case <-time.After(d):
		t.Fatalf("no member won %s within %v", what, d)
		return win{}
	}
}

// failoverBound is the documented bound on leader failover for the test
// configuration: two election timeouts plus round trips, with slack for
// a loaded machine.
func failoverBound(cfg Config) time.Duration {
	return 2*time.Duration(cfg.ElectionTicks)*cfg.TickInterval + 500*time.Millisecond
}

func writeKeys(t *testing.T, g *Group, tok fence.Token, prefix string, n int) map[string]string {
	t.Helper()
	ctx := testCtx(t, 10*time.Second)
	out := map[string]string{}
	for i := range n {
		k, v := fmt.Sprintf("%s/%d", prefix, i), fmt.Sprintf("value %d of %s", i, prefix)
		if _, err := g.Store().Put(ctx, tok, k, []byte(v)); err != nil {
			t.Fatalf("Put %q on %s: %v", k, g.ID(), err)
		}
		out[k] = v
	}
	return out
}

// writeAsHolder writes n keys as the current holder *w; if the holder
// loses its term meanwhile (a loaded machine can delay heartbeats past
// the fence window), it continues under the next holder from wins. Only
// acknowledged writes are returned.
func writeAsHolder(t *testing.T, c *cluster, wins <-chan win, w *win, prefix string, n int) map[string]string {
	t.Helper()
	out := map[string]string{}
	for i := 0; i < n; {
		k, v := fmt.Sprintf("%s/%d", prefix, i), fmt.Sprintf("value %d of %s", i, prefix)
		g := c.groups[w.id]
		if _, err := g.Store().Put(t.Context(), w.term.Token(), k, []byte(v)); err != nil {
			if !errors.Is(err, ErrNotLeader) && !errors.Is(err, fence.ErrStale) {
				t.Fatalf("Put %q on %s: %v", k, w.id, err)
			}
			t.Logf("Put %q on %s: %v; continuing under the next holder", k, w.id, err)
			*w = nextWin(t, wins, 10*time.Second, "after a lost term")
			continue
		}
		out[k] = v
		i++
	}
	return out
}

func checkKeys(t *testing.T, g *Group, want map[string]string) {
	t.Helper()
	ctx := testCtx(t, 10*time.Second)
	for k, v := range want {
		it, err := g.Store().Get(ctx, k)
		if err != nil || string(it.Value) != v {
			t.Fatalf("Get %q on %s = (%q, %v), want %q", k, g.ID(), it.Value, err, v)
		}
	}
}

// TestLeaderCrash: the holder stops without resigning; another member
// wins within the failover bound and finds every acknowledged write.
func TestLeaderCrash(t *testing.T) {
	c := newCluster(t, 3, nil)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	wins := c.campaignLoops(ctx)
	first := nextWin(t, wins, 10*time.Second, "the first term")
	acked := writeAsHolder(t, c, wins, &first, "before", 20)

	crashed := time.Now()
	c.crash(first.id)
	second := nextWin(t, wins, 10*time.Second, "after the crash")
	took := second.at.Sub(crashed)
	bound := failoverBound(c.config(second.id))
	t.Logf("member %s crashed; %s won token %d after %v (bound %v)", first.id, second.id, second.term.Token(), took, bound)
	if took > bound {
		t.Errorf("failover took %v, beyond the bound %v", took, bound)
	}
	if second.term.Token() <= first.term.Token() {
		t.Fatalf("token %d after %d", second.term.Token(), first.term.Token())
	}
	g := c.groups[second.id]
	checkKeys(t, g, acked)
	writeAsHolder(t, c, wins, &second, "after", 5)
	g = c.groups[second.id]
	// The crashed holder's token is now stale.
	if _, err := g.Store().Put(t.Context(), first.term.Token(), "before/0", []byte("late")); !errors.Is(err, fence.ErrStale) {
		t.Fatalf("Put with the old token %d after failover: %v, want fence.ErrStale", first.term.Token(), err)
	}
}

// TestPartitionedLeader: the holder is cut off from the majority. Its
// Done closes before the majority's new holder wins; its writes fail; after
// the partition heals there is one leader and no acknowledged write is
// lost.
func TestPartitionedLeader(t *testing.T) {
	c := newCluster(t, 3, nil)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	wins := c.campaignLoops(ctx)
	first := nextWin(t, wins, 10*time.Second, "the first term")
	acked := writeAsHolder(t, c, wins, &first, "before", 10)
	old := c.groups[first.id]

	c.isolate(first.id, true)
	// A write on the cut-off holder cannot commit: it fails once the
	// holder steps down (or its context ends).
	wctx, wcancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer wcancel()
	_, werr := old.Store().Put(wctx, first.term.Token(), "during", []byte("lost"))
	if werr == nil || !(errors.Is(werr, ErrNotLeader) || errors.Is(werr, fence.ErrStale)) {
		t.Fatalf("Put on the cut-off holder: %v, want ErrNotLeader or fence.ErrStale", werr)
	}
	second := nextWin(t, wins, 10*time.Second, "in the majority")
	if second.id == first.id {
		t.Fatalf("the cut-off member %s won again", first.id)
	}
	select {
	case <-first.term.Done():
	default:
		t.Fatalf("member %s won while the cut-off holder's term was still open", second.id)
	}
	if err := first.term.Err(); !errors.Is(err, lease.ErrLost) {
		t.Fatalf("cut-off holder's Err = %v, want lease.ErrLost", err)
	}
	if _, err := old.Store().Put(t.Context(), first.term.Token(), "during2", nil); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("Put on the deposed member: %v, want ErrNotLeader", err)
	}
	newer := writeAsHolder(t, c, wins, &second, "majority", 10)

	c.isolate(first.id, false)
	lead := c.raftLeader(testCtx(t, 10*time.Second))
	if lead.ID() != second.id {
		t.Logf("after healing, %s leads (the majority's holder was %s)", lead.ID(), second.id)
	}
	for _, g := range c.groups {
		checkKeys(t, g, acked)
		checkKeys(t, g, newer)
	}
	if _, err := c.groups[second.id].Store().Get(t.Context(), "during"); err == nil {
		t.Fatalf("the cut-off holder's write survived")
	}
}
