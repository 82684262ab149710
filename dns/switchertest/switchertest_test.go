package switchertest_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/hakit/hakit/dns"
	"github.com/hakit/hakit/dns/switchertest"
	"github.com/hakit/hakit/fence"
)

// memSwitcher is an in-memory switcher whose defects can be switched on,
// to show that the suite notices each of them.
type memSwitcher struct {
	defect string

	mu     sync.Mutex
	high   fence.Token
	active bool
	token  fence.Token
	calls  int
}

func (m *memSwitcher) Promote(ctx context.Context, t fence.Token) error {
	if err := ctx.Err(); err != nil && m.defect != "ignores-context" {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if m.defect == "not-idempotent" && m.active && m.token == t {
		return errors.New("already promoted")
	}
	if t < m.high && m.defect != "ignores-stale" {
		return fence.Stale(t, m.high)
	}
	m.high = max(m.high, t)
	m.active, m.token = true, t
	return nil
}

func (m *memSwitcher) Demote(ctx context.Context, t fence.Token) error {
	if err := ctx.Err(); err != nil && m.defect != "ignores-context" {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if t < m.high && m.defect != "ignores-stale" {
		return fence.Stale(t, m.high)
	}
	m.high = max(m.high, t)
	if m.defect != "demote-noop" {
		m.active = false
	}
	if m.defect == "forgets-on-demote" {
		m.high = 0
	}
	return nil
}

func harness(defect string) switchertest.Harness {
	return switchertest.Harness{
		New: func(t *testing.T) switchertest.Backend {
			m := &memSwitcher{defect: defect}
			return switchertest.Backend{
				Switcher: func(*testing.T, string) dns.Switcher { return m },
				Observe: func(context.Context) (bool, fence.Token, error) {
					m.mu.Lock()
					defer m.mu.Unlock()
					return m.active, m.token, nil
				},
			}
		},
	}
}

const defectEnv = "HAKIT_SWITCHERTEST_DEFECT"

// TestDefectiveSwitcher runs the suite on a defective switcher when the
// parent test asks for it in the environment; otherwise it does nothing.
func TestDefectiveSwitcher(t *testing.T) {
	defect := os.Getenv(defectEnv)
	if defect == "" {
		return // only TestSuiteCatchesDefects's child processes run it
	}
	switchertest.Run(t, harness(defect))
}

func TestCorrectSwitcherPasses(t *testing.T) {
	switchertest.Run(t, harness(""))
}

func TestSuiteCatchesDefects(t *testing.T) {
	tests := []struct {
		defect   string
		wantFail string // the subtest that must fail
	}{
		{"not-idempotent", "PromoteIdempotent"},
		{"ignores-stale", "StaleTokenRefused"},
		{"ignores-context", "ContextHonoured"},
		{"demote-noop", "DemoteIdempotent"},
		{"forgets-on-demote", "StaleTokenRefused"},
	}
	for _, tt := range tests {
		t.Run(tt.defect, func(t *testing.T) {
			cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestDefectiveSwitcher$", "-test.v")
			cmd.Env = append(os.Environ(), defectEnv+"="+tt.defect)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				t.Fatalf("suite passed a switcher that %s (err %v); output:\n%s", tt.defect, err, out)
			}
			if !strings.Contains(string(out), "--- FAIL: TestDefectiveSwitcher/"+tt.wantFail) {
				t.Fatalf("want subtest %s to fail; output:\n%s", tt.wantFail, out)
			}
		})
	}
}
