package storagetest

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"pgregory.net/rapid"

	"github.com/hakit/hakit/storage"
)

// testBackendModel drives random multi-key commits, with random
// conditions, and Gets, and checks each result against a map: a commit
// applies all its ops or, if any condition fails, none, and its version is
// above every version the backend returned before. As in testModel, one
// backend serves many cases under fresh key prefixes, and a failed case
// makes the next one open a fresh backend.
func testBackendModel(t *testing.T, open func(t *testing.T) storage.Backend, c config) {
	var (
		b      storage.Backend
		last   storage.Version // the largest version the backend returned
		clean  bool
		caseNo int
	)
	keys := []string{"a", "b", "c"}
	rapid.Check(t, func(rt *rapid.T) {
		if !clean {
			b, last = open(t), 0
		}
		clean = false
		caseNo++
		prefix := fmt.Sprintf("bmodel/%d/", caseNo)
		items := map[string]storage.Item{}
		ctx := t.Context()

		commit := func(rt *rapid.T) {
			opKeys := rapid.SliceOfNDistinct(rapid.SampledFrom(keys), 1, len(keys), rapid.ID[string]).Draw(rt, "op keys")
			var ops []storage.Op
			for _, k := range opKeys {
				if rapid.IntRange(0, 3).Draw(rt, "delete") == 0 {
					ops = append(ops, storage.Op{Key: prefix + k, Delete: true})
				} else {
					ops = append(ops, storage.Op{Key: prefix + k, Value: rapid.SliceOfN(rapid.Byte(), 0, 8).Draw(rt, "value")})
				}
			}
			condKeys := rapid.SliceOfNDistinct(rapid.SampledFrom(keys), 0, 2, rapid.ID[string]).Draw(rt, "cond keys")
			var conds []storage.Cond
			hold := true
			for _, k := range condKeys {
				cur := items[prefix+k].Version
				want := rapid.SampledFrom([]storage.Version{cur, cur, cur, 0, cur + 1, last}).Draw(rt, "cond version")
				conds = append(conds, storage.Cond{Key: prefix + k, Version: want})
				hold = hold && want == cur
			}
			v, err := b.Commit(ctx, conds, ops)
			if !hold {
				if !errors.Is(err, storage.ErrConflict) {
					rt.Fatalf("Commit(%v, %s) with a failing condition: version %d, error %v; want storage.ErrConflict", conds, describeOps(ops), v, err)
				}
				return
			}
			if err != nil {
				rt.Fatalf("Commit(%v, %s): %v", conds, describeOps(ops), err)
			}
			if v <= last {
				rt.Fatalf("Commit(%v, %s) returned version %d, not above the earlier %d", conds, describeOps(ops), v, last)
			}
			last = v
			for _, op := range ops {
				if op.Delete {
					delete(items, op.Key)
				} else {
					items[op.Key] = storage.Item{Value: op.Value, Version: v}
				}
			}
		}
		get := func(rt *rapid.T) {
			k := prefix + rapid.SampledFrom(keys).Draw(rt, "key")
			it, err := b.Get(ctx, k)
			want, ok := items[k]
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
		}
		steps := rapid.IntRange(1, c.n(30, 6)).Draw(rt, "steps")
		for range steps {
			if rapid.Bool().Draw(rt, "commit") {
				commit(rt)
			} else {
				get(rt)
			}
		}
		clean = true
	})
}
