package dns_test

import (
	"errors"
	"fmt"
	"reflect"
	"testing"

	"pgregory.net/rapid"

	"github.com/hakit/hakit/dns"
	"github.com/hakit/hakit/fence"
)

// TestMultiProperties checks Multi's calling order and error aggregation
// on random sets of switchers that fail at random. rapid prints the seed
// of a failing case.
func TestMultiProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(0, 6).Draw(t, "switchers")
		failPromote := rapid.SliceOfN(rapid.Bool(), n, n).Draw(t, "failPromote")
		failDemote := rapid.SliceOfN(rapid.Bool(), n, n).Draw(t, "failDemote")
		tok := fence.Token(rapid.Uint64Range(1, 1<<20).Draw(t, "token"))
		op := rapid.SampledFrom([]string{"promote", "demote"}).Draw(t, "op")

		j := &journal{}
		var sws []dns.Switcher
		var recs []*recorder
		for i := range n {
			r := &recorder{name: fmt.Sprint(i), journal: j}
			if failPromote[i] {
				r.promoteErr = fmt.Errorf("promote %d failed", i)
			}
			if failDemote[i] {
				r.demoteErr = fmt.Errorf("demote %d failed", i)
			}
			recs = append(recs, r)
			sws = append(sws, r)
		}
		m := dns.Multi(sws...)

		var want []string
		var wantErrs []error
		if op == "promote" {
			err := m.Promote(t.Context(), tok)
			failed := -1
			for i, r := range recs {
				want = append(want, fmt.Sprintf("promote %d %d", i, tok))
				if r.promoteErr != nil {
					failed = i
					wantErrs = append(wantErrs, r.promoteErr, dns.ErrPartial)
					break
				}
			}
			for i := failed; i >= 0; i-- {
				want = append(want, fmt.Sprintf("demote %d %d", i, tok))
				if recs[i].demoteErr != nil {
					wantErrs = append(wantErrs, recs[i].demoteErr)
				}
			}
			check(t, err, wantErrs)
			if failed >= 0 {
				// Whatever rolled back cleanly is no longer promoted.
				for i := 0; i <= failed; i++ {
					if recs[i].demoteErr == nil && recs[i].promoted {
						t.Fatalf("switcher %d still promoted after the rollback", i)
					}
				}
			}
		} else {
			err := m.Demote(t.Context(), tok)
			for i := n - 1; i >= 0; i-- {
				want = append(want, fmt.Sprintf("demote %d %d", i, tok))
				if recs[i].demoteErr != nil {
					wantErrs = append(wantErrs, recs[i].demoteErr)
				}
			}
			check(t, err, wantErrs)
		}
		if got := j.get(); !reflect.DeepEqual(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Fatalf("calls = %q, want %q", got, want)
		}
	})
}

func check(t *rapid.T, err error, want []error) {
	if len(want) == 0 {
		if err != nil {
			t.Fatalf("err = %v, want nil", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("err = nil, want %v", want)
	}
	for _, w := range want {
		if !errors.Is(err, w) {
			t.Fatalf("errors.Is(%v, %v) = false", err, w)
		}
	}
}
