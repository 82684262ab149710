package storagetest

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"pgregory.net/rapid"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/storage"
)

// modelStore is the reference a Store is compared with in testModel.
type modelStore struct {
	high  fence.Token
	items map[string]storage.Item
	// maxVer is the largest version each key ever had, deleted or not:
	// a new version must be above it.
	maxVer map[string]storage.Version
}

// Few keys, so that writes, deletes and re-creations meet on one key.
var modelKeys = []string{"a", "b/ü"}

// testModel drives random Put, CompareAndSwap, Delete and Get calls with
// random tokens and checks every result against modelStore. rapid prints
// the seed and a minimal failing sequence.
//
// Opening a store can be expensive (a Raft group, an etcd namespace), so
// one store serves many generated cases: each case works under its own
// key prefix and starts from the fence the previous cases left, which the
// model knows exactly. A case that fails leaves the store in a state the
// model may not know, so the next case (rapid's shrinking runs included)
// gets a fresh store.
func testModel(t *testing.T, open func(t *testing.T) storage.Store, c config) {
	var (
		s      storage.Store
		high   fence.Token // the store's fence, as the model knows it
		clean  bool        // whether s is in the state high describes
		caseNo int
	)
	rapid.Check(t, func(rt *rapid.T) {
		if !clean {
			s, high = open(t), 0
		}
		clean = false
		caseNo++
		prefix := fmt.Sprintf("model/%d/", caseNo)
		m := &modelStore{high: high, items: map[string]storage.Item{}, maxVer: map[string]storage.Version{}}
		ctx := t.Context()
		key := rapid.Custom(func(rt *rapid.T) string {
			return prefix + rapid.SampledFrom(modelKeys).Draw(rt, "key")
		})
		// Tokens near the fence are the interesting ones: equal (most
		// often), just below, just above; the zero token now and then.
		token := rapid.Custom(func(rt *rapid.T) fence.Token {
			d := rapid.SampledFrom([]int{0, -2, -1, 0, 0, 0, 0, 1, 1, 2}).Draw(rt, "token step")
			if rapid.IntRange(0, 15).Draw(rt, "zero token") == 0 {
				return 0
			}
			if int64(m.high)+int64(d) < 1 {
				return 1
			}
			return fence.Token(int64(m.high) + int64(d))
		})
		value := rapid.SliceOfN(rapid.Byte(), 0, 16)
		// admit applies the fence rule and reports the expected error.
		admit := func(tok fence.Token) error {
			switch {
			case tok == 0:
				return fence.ErrNoToken
			case tok < m.high:
				return fence.ErrStale
			}
			return nil
		}
		checkWrite := func(rt *rapid.T, what, k string, v storage.Version, err, want error) bool {
			if want != nil {
				if !errors.Is(err, want) {
					rt.Fatalf("%s: error %v, want one matching %q", what, err, want)
				}
				return false
			}
			if err != nil {
				rt.Fatalf("%s: unexpected error %v", what, err)
			}
			if v <= m.maxVer[k] {
				rt.Fatalf("%s: version %d not above the key's largest earlier version %d", what, v, m.maxVer[k])
			}
			m.maxVer[k] = v
			return true
		}

		actions := map[string]func(*rapid.T){
			"Put": func(rt *rapid.T) {
				tok, k, val := token.Draw(rt, "token"), key.Draw(rt, "key"), value.Draw(rt, "value")
				v, err := s.Put(ctx, tok, k, val)
				if checkWrite(rt, "Put", k, v, err, admit(tok)) {
					m.high = max(m.high, tok)
					m.items[k] = storage.Item{Value: val, Version: v}
				}
			},
			"CompareAndSwap": func(rt *rapid.T) {
				tok, k, val := token.Draw(rt, "token"), key.Draw(rt, "key"), value.Draw(rt, "value")
				cur := m.items[k].Version
				// Mostly the right version; sometimes 0, an old one or one
				// never assigned.
				old := rapid.SampledFrom([]storage.Version{cur, cur, cur, 0, m.maxVer[k], m.maxVer[k] + 1, cur / 2}).Draw(rt, "old")
				v, err := s.CompareAndSwap(ctx, tok, k, old, val)
				want := admit(tok)
				if want == nil && old != cur {
					want = storage.ErrConflict
				}
				if checkWrite(rt, "CompareAndSwap", k, v, err, want) {
					m.high = max(m.high, tok)
					m.items[k] = storage.Item{Value: val, Version: v}
				}
			},
			"Delete": func(rt *rapid.T) {
				tok, k := token.Draw(rt, "token"), key.Draw(rt, "key")
				err := s.Delete(ctx, tok, k)
				want := admit(tok)
				if want != nil {
					if !errors.Is(err, want) {
						rt.Fatalf("Delete: error %v, want one matching %q", err, want)
					}
					return
				}
				if err != nil {
					rt.Fatalf("Delete: unexpected error %v", err)
				}
				m.high = max(m.high, tok)
				delete(m.items, k)
			},
			"Get": func(rt *rapid.T) {
				k := key.Draw(rt, "key")
				it, err := s.Get(ctx, k)
				want, ok := m.items[k]
				switch {
				case !ok:
					if !errors.Is(err, storage.ErrNotFound) {
						rt.Fatalf("Get(%q) = (%s, %d, %v), want storage.ErrNotFound", k, show(it.Value), it.Version, err)
					}
				case err != nil:
					rt.Fatalf("Get(%q): %v, want (%s, %d)", k, err, show(want.Value), want.Version)
				case !bytes.Equal(it.Value, want.Value) || it.Version != want.Version:
					rt.Fatalf("Get(%q) = (%s, %d), want (%s, %d)", k, show(it.Value), it.Version, show(want.Value), want.Version)
				}
			},
		}
		names := []string{"CompareAndSwap", "Delete", "Get", "Put"}
		steps := rapid.IntRange(1, c.n(40, 8)).Draw(rt, "steps")
		for range steps {
			actions[rapid.SampledFrom(names).Draw(rt, "action")](rt)
		}
		high, clean = m.high, true
	})
}
