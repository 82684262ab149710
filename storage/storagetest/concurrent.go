package storagetest

import (
	"errors"
	"fmt"
	"maps"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/storage"
)

// kvInput is one call in a recorded history.
type kvInput struct {
	get   bool
	key   string
	token fence.Token
	value string
}

// kvOutput is what the call returned.
type kvOutput struct {
	ok       bool // write admitted, or Get found the key
	stale    bool // write refused with fence.ErrStale
	notFound bool // Get returned ErrNotFound
	value    string
}

// fencedKV is the sequential specification of a fenced store, as a
// porcupine model: a write with a token below the highest admitted one is
// refused and changes nothing; any other write is admitted and raises the
// fence to its token.
type fencedKV struct {
	high fence.Token
	vals map[string]string
}

func fencedKVModel() porcupine.Model {
	return porcupine.Model{
		Init: func() any { return fencedKV{vals: map[string]string{}} },
		Step: func(state, input, output any) (bool, any) {
			st, in, out := state.(fencedKV), input.(kvInput), output.(kvOutput)
			if in.get {
				v, ok := st.vals[in.key]
				if out.notFound {
					return !ok, st
				}
				return ok && v == out.value, st
			}
			if in.token < st.high {
				return out.stale, st
			}
			if !out.ok {
				return false, st
			}
			next := fencedKV{high: in.token, vals: maps.Clone(st.vals)}
			next.vals[in.key] = in.value
			return true, next
		},
		Equal: func(a, b any) bool {
			x, y := a.(fencedKV), b.(fencedKV)
			return x.high == y.high && maps.Equal(x.vals, y.vals)
		},
		DescribeOperation: func(input, output any) string {
			in, out := input.(kvInput), output.(kvOutput)
			if in.get {
				if out.notFound {
					return fmt.Sprintf("get(%s) -> not found", in.key)
				}
				return fmt.Sprintf("get(%s) -> %s", in.key, out.value)
			}
			res := "ok"
			if out.stale {
				res = "stale"
			}
			return fmt.Sprintf("put(%d, %s, %s) -> %s", in.token, in.key, in.value, res)
		},
	}
}

// history records operations from several goroutines.
type history struct {
	start time.Time
	mu    sync.Mutex
	ops   []porcupine.Operation
}

func (h *history) now() int64 { return time.Since(h.start).Nanoseconds() }

func (h *history) add(client int, in kvInput, call int64, out kvOutput) {
	ret := h.now()
	h.mu.Lock()
	h.ops = append(h.ops, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
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
		in := kvInput{key: key, token: tok, value: value}
		call := h.now()
		_, err := s.Put(t.Context(), tok, key, []byte(value))
		switch {
		case err == nil:
			h.add(client, in, call, kvOutput{ok: true})
		case errors.Is(err, fence.ErrStale):
			var se *fence.StaleError
			if errors.As(err, &se) && se.High <= se.Token {
				fail("Put(token %d, %q) refused as stale by token %d, which is not larger: %v", tok, key, se.High, err)
			}
			h.add(client, in, call, kvOutput{stale: true})
		default:
			fail("Put(token %d, %q): %v", tok, key, err)
		}
	}
	get := func(client int, key string) {
		call := h.now()
		it, err := s.Get(t.Context(), key)
		switch {
		case err == nil:
			h.add(client, kvInput{get: true, key: key}, call, kvOutput{ok: true, value: string(it.Value)})
		case errors.Is(err, storage.ErrNotFound):
			h.add(client, kvInput{get: true, key: key}, call, kvOutput{notFound: true})
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
	ops := h.ops

	// Tokens admitted never go down: an admitted write that started after
	// another admitted write returned carries a token at least as large.
	var admitted []porcupine.Operation
	for _, op := range ops {
		if in := op.Input.(kvInput); !in.get && op.Output.(kvOutput).ok {
			admitted = append(admitted, op)
		}
	}
	sort.Slice(admitted, func(i, j int) bool { return admitted[i].Return < admitted[j].Return })
	for i, a := range admitted {
		for _, b := range admitted[i+1:] {
			if b.Call > a.Return && b.Input.(kvInput).token < a.Input.(kvInput).token {
				t.Fatalf("token went down: %q with token %d was admitted after %q with token %d had returned",
					b.Input.(kvInput).value, b.Input.(kvInput).token, a.Input.(kvInput).value, a.Input.(kvInput).token)
			}
		}
	}

	// No acknowledged write lost: each own key holds its writer's last
	// admitted value, and the shared key one admitted under the highest
	// token admitted there.
	lastOwn := map[string]string{}
	var maxShared fence.Token
	sharedByValue := map[string]fence.Token{}
	for _, op := range admitted {
		in := op.Input.(kvInput)
		if in.key == "shared" {
			maxShared = max(maxShared, in.token)
			sharedByValue[in.value] = in.token
			continue
		}
		lastOwn[in.key] = in.value // each writer's calls are sequential
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

	res, info := porcupine.CheckOperationsVerbose(fencedKVModel(), ops, 20*time.Second)
	switch res {
	case porcupine.Illegal:
		var b strings.Builder
		for _, part := range info.PartialLinearizationsOperations() {
			for _, lin := range part {
				for _, op := range lin {
					fmt.Fprintf(&b, "\n  %s", fencedKVModel().DescribeOperation(op.Input, op.Output))
				}
				break
			}
		}
		t.Fatalf("history of %d operations is not linearizable against a fenced key-value store; longest linearizable prefix:%s", len(ops), b.String())
	case porcupine.Unknown:
		t.Logf("linearizability check of %d operations timed out; the direct checks above passed", len(ops))
	}
}
