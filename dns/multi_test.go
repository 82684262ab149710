package dns_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/hakit/hakit/dns"
	"github.com/hakit/hakit/fence"
)

// recorder is a Switcher that logs its calls to a shared journal and fails
// when told to.
type recorder struct {
	name       string
	journal    *journal
	promoteErr error
	demoteErr  error
	promoted   bool
}

type journal struct {
	mu    sync.Mutex
	calls []string
}

func (j *journal) add(s string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.calls = append(j.calls, s)
}

func (j *journal) get() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]string(nil), j.calls...)
}

func (r *recorder) String() string { return r.name }

func (r *recorder) Promote(ctx context.Context, t fence.Token) error {
	r.journal.add(fmt.Sprintf("promote %s %d", r.name, t))
	if r.promoteErr != nil {
		return r.promoteErr
	}
	r.promoted = true
	return nil
}

func (r *recorder) Demote(ctx context.Context, t fence.Token) error {
	r.journal.add(fmt.Sprintf("demote %s %d", r.name, t))
	if r.demoteErr != nil {
		return r.demoteErr
	}
	r.promoted = false
	return nil
}

func TestMulti(t *testing.T) {
	boom := errors.New("boom")
	stale := fence.Stale(3, 9)
	tests := []struct {
		name       string
		promoteErr map[string]error
		demoteErr  map[string]error
		op         string
		want       []string
		wantIs     []error
		wantInMsg  []string
	}{{
		name: "promote in order",
		op:   "promote",
		want: []string{"promote a 3", "promote b 3", "promote c 3"},
	}, {
		name: "demote in reverse",
		op:   "demote",
		want: []string{"demote c 3", "demote b 3", "demote a 3"},
	}, {
		name:      "every demote attempted and errors aggregated",
		op:        "demote",
		demoteErr: map[string]error{"c": boom, "b": stale},
		want:      []string{"demote c 3", "demote b 3", "demote a 3"},
		wantIs:    []error{boom, fence.ErrStale},
		wantInMsg: []string{"switcher 2 (c)", "switcher 1 (b)", "boom", "stale token 3"},
	}, {
		name:       "failed promote rolls back in reverse and stops",
		op:         "promote",
		promoteErr: map[string]error{"b": stale},
		want:       []string{"promote a 3", "promote b 3", "demote b 3", "demote a 3"},
		wantIs:     []error{fence.ErrStale, dns.ErrPartial},
		wantInMsg:  []string{"promote switcher 1 (b) with token 3"},
	}, {
		name:       "failed rollback is reported too",
		op:         "promote",
		promoteErr: map[string]error{"c": boom},
		demoteErr:  map[string]error{"a": stale},
		want:       []string{"promote a 3", "promote b 3", "promote c 3", "demote c 3", "demote b 3", "demote a 3"},
		wantIs:     []error{boom, fence.ErrStale, dns.ErrPartial},
		wantInMsg:  []string{"roll back switcher 0 (a)"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := &journal{}
			var sws []dns.Switcher
			for _, n := range []string{"a", "b", "c"} {
				sws = append(sws, &recorder{name: n, journal: j, promoteErr: tt.promoteErr[n], demoteErr: tt.demoteErr[n]})
			}
			m := dns.Multi(sws...)
			var err error
			if tt.op == "promote" {
				err = m.Promote(t.Context(), 3)
			} else {
				err = m.Demote(t.Context(), 3)
			}
			if got := j.get(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("calls = %q, want %q", got, tt.want)
			}
			if len(tt.wantIs) == 0 {
				if err != nil {
					t.Fatalf("err = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatal("err = nil, want an error")
			}
			for _, target := range tt.wantIs {
				if !errors.Is(err, target) {
					t.Errorf("errors.Is(%v, %v) = false", err, target)
				}
			}
			for _, s := range tt.wantInMsg {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q spans several lines", err)
			}
			var se *fence.StaleError
			if errors.Is(err, fence.ErrStale) && !errors.As(err, &se) {
				t.Errorf("errors.As(*fence.StaleError) failed on %v", err)
			}
		})
	}
}

func TestMultiEmpty(t *testing.T) {
	m := dns.Multi()
	if err := m.Promote(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	if err := m.Demote(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
}

func TestMultiCopiesItsArguments(t *testing.T) {
	j := &journal{}
	sws := []dns.Switcher{&recorder{name: "a", journal: j}}
	m := dns.Multi(sws...)
	sws[0] = &recorder{name: "z", journal: j}
	if err := m.Promote(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	if got := j.get(); !reflect.DeepEqual(got, []string{"promote a 1"}) {
		t.Fatalf("calls = %q", got)
	}
}
