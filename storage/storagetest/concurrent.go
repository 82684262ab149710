package storagetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/storage"
)

// history records calls from several goroutines.
type history struct {
	start time.Time
	mu    sync.Mutex
	calls []Call
}

func (h *history) now() int64 { return time.Since(h.start).Nanoseconds() }

// add records c, which started at c.Start and returns now.
func (h *history) add(c Call) {
	c.End = h.now()
	h.mu.Lock()
	h.calls = append(h.calls, c)
	h.mu.Unlock()
}

// testConcurrentWriters runs writers whose tokens interleave (writer i
// uses tokens i+1, i+1+W, i+1+2W, ...), so that each keeps being overtaken
// by the others, plus a reader. It then checks the recorded history: no
// acknowledged write lost, tokens admitted never go down in real time, and
// the whole history linearizable against fencedKV.
func testConcurrentWriters(t *testing.T, s storage.Store, c config) {
	const writers = 4
	rounds := c.n(30, 8)
	h := &history{start: time.Now()}
	var wg sync.WaitGroup
	var failed sync.Once
	fail := func(format string, args ...any) {
		failed.Do(func() { t.Errorf(format, args...) })
	}
	put := func(client int, tok fence.Token, key, value string) {
		c := Call{Client: client, Key: key, Token: tok, Value: value, Start: h.now()}
		_, err := s.Put(t.Context(), tok, key, []byte(value))
		switch {
		case err == nil:
			c.OK = true
			h.add(c)
		case errors.Is(err, fence.ErrStale):
			var se *fence.StaleError
			if errors.As(err, &se) && se.High <= se.Token {
				fail("Put(token %d, %q) refused as stale by token %d, which is not larger: %v", tok, key, se.High, err)
			}
			c.Stale = true
			h.add(c)
		default:
			fail("Put(token %d, %q): %v", tok, key, err)
		}
	}
	get := func(client int, key string) {
		c := Call{Client: client, Get: true, Key: key, Start: h.now()}
		it, err := s.Get(t.Context(), key)
		switch {
		case err == nil:
			c.OK, c.Value = true, string(it.Value)
			h.add(c)
		case errors.Is(err, storage.ErrNotFound):
			c.NotFound = true
			h.add(c)
		default:
			fail("Get(%q): %v", key, err)
		}
	}
	for w := range writers {
		wg.Go(func() {
			for r := range rounds {
				tok := fence.Token(r*writers + w + 1)
				put(w, tok, "shared", fmt.Sprintf("w%d r%d", w, r))
				put(w, tok, fmt.Sprintf("own/%d", w), fmt.Sprintf("r%d", r))
			}
		})
	}
	stop := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		// Bounded, so that a fast store does not flood the checker.
		for i := range writers * rounds {
			select {
			case <-stop:
				return
			default:
			}
			get(writers, "shared")
			get(writers, fmt.Sprintf("own/%d", i%writers))
		}
	}()
	wg.Wait()
	close(stop)
	<-readerDone
	// Final reads, after everything else, are part of the history too.
	get(writers+1, "shared")
	for w := range writers {
		get(writers+1, fmt.Sprintf("own/%d", w))
	}
	if t.Failed() {
		return
	}
	CheckHistory(t, h.calls)

	// No acknowledged write lost: each own key holds its writer's last
	// admitted value, and the shared key the one admitted under the
	// highest token admitted there.
	lastOwn := map[string]string{}
	var maxShared fence.Token
	sharedByValue := map[string]fence.Token{}
	for _, c := range h.calls {
		switch {
		case c.Get || !c.OK:
		case c.Key == "shared":
			maxShared = max(maxShared, c.Token)
			sharedByValue[c.Value] = c.Token
		default:
			lastOwn[c.Key] = c.Value // each writer's calls are sequential
		}
	}
	for w := range writers {
		key := fmt.Sprintf("own/%d", w)
		want, ok := lastOwn[key]
		if !ok {
			wantAbsent(t, s, key)
			continue
		}
		wantItem(t, s, key, []byte(want), 0)
	}
	if len(sharedByValue) > 0 {
		got := string(mustGet(t, s, "shared").Value)
		if tok, ok := sharedByValue[got]; !ok || tok != maxShared {
			t.Fatalf("shared key holds %q (admitted with token %d), want the value admitted with the highest token %d", got, tok, maxShared)
		}
	}
}
