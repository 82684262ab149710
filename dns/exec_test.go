package dns_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hakit/hakit/dns"
	"github.com/hakit/hakit/dns/switchertest"
	"github.com/hakit/hakit/fence"
)

// capture is a slog.Handler that keeps every record's message and attrs.
type capture struct {
	mu    *sync.Mutex
	lines *[]map[string]string
	attrs []slog.Attr
}

func newCapture() *capture { return &capture{mu: &sync.Mutex{}, lines: &[]map[string]string{}} }

func (c *capture) Enabled(context.Context, slog.Level) bool { return true }

func (c *capture) Handle(_ context.Context, r slog.Record) error {
	m := map[string]string{"msg": r.Message, "level": r.Level.String()}
	for _, a := range c.attrs {
		m[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value.String(); return true })
	c.mu.Lock()
	defer c.mu.Unlock()
	*c.lines = append(*c.lines, m)
	return nil
}

func (c *capture) WithAttrs(as []slog.Attr) slog.Handler {
	return &capture{mu: c.mu, lines: c.lines, attrs: append(append([]slog.Attr(nil), c.attrs...), as...)}
}

func (c *capture) WithGroup(string) slog.Handler { return c }

func (c *capture) output() []map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []map[string]string
	for _, m := range *c.lines {
		if m["msg"] == "dns: exec: output" {
			out = append(out, m)
		}
	}
	return out
}

func sh(script string) []string { return []string{"/bin/sh", "-c", script} }

func newExec(t *testing.T, cfg dns.ExecConfig) *dns.Exec {
	t.Helper()
	if cfg.Member == "" {
		cfg.Member = "m1"
	}
	e, err := dns.NewExec(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestExecEnvironmentAndOutput(t *testing.T) {
	logs := newCapture()
	e := newExec(t, dns.ExecConfig{
		Member:  "db-2",
		Promote: [][]string{sh(`echo "token=$HAKIT_TOKEN role=$HAKIT_ROLE member=$HAKIT_MEMBER extra=$EXTRA"; printf 'warn\r\npartial' >&2`)},
		Demote:  [][]string{sh(`echo "token=$HAKIT_TOKEN role=$HAKIT_ROLE"`)},
		Env:     []string{"EXTRA=x", "HAKIT_TOKEN=spoofed"},
		Logger:  slog.New(logs),
	})
	if err := e.Promote(t.Context(), 42); err != nil {
		t.Fatal(err)
	}
	if err := e.Demote(t.Context(), 42); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range logs.output() {
		got = append(got, m["role"]+"|"+m["stream"]+"|"+m["line"])
		if m["command"] != "/bin/sh" || m["member"] != "db-2" || m["token"] != "42" {
			t.Errorf("record lacks context: %v", m)
		}
	}
	want := []string{
		"active|stdout|token=42 role=active member=db-2 extra=x",
		"standby|stdout|token=42 role=standby",
	}
	// stderr lines come from another stream: check them apart from order.
	var stdout, stderr []string
	for _, g := range got {
		if strings.Contains(g, "|stderr|") {
			stderr = append(stderr, g)
		} else {
			stdout = append(stdout, g)
		}
	}
	if strings.Join(stdout, "\n") != strings.Join(want, "\n") {
		t.Errorf("stdout lines = %q, want %q", stdout, want)
	}
	if strings.Join(stderr, "\n") != "active|stderr|warn\nactive|stderr|partial" {
		t.Errorf("stderr lines = %q", stderr)
	}
}

func TestExecLongLinesAreSplit(t *testing.T) {
	logs := newCapture()
	e := newExec(t, dns.ExecConfig{
		Promote: [][]string{sh(`head -c 10000 /dev/zero | tr '\0' 'a'; echo; echo end`)},
		Logger:  slog.New(logs),
	})
	if err := e.Promote(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	var lens []int
	for _, m := range logs.output() {
		lens = append(lens, len(m["line"]))
	}
	if want := []int{4096, 4096, 1808, 3}; !equalInts(lens, want) {
		t.Fatalf("line lengths = %v, want %v", lens, want)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestExecErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		cfg     dns.ExecConfig
		op      string
		wantMsg []string
		wantIs  []error
		ran     []string // marker files that must exist afterwards
		notRan  []string
	}{{
		name:    "exit status",
		cfg:     dns.ExecConfig{Promote: [][]string{sh("exit 3"), sh("touch " + dir + "/p2")}},
		op:      "promote",
		wantMsg: []string{`promote command ["/bin/sh" "-c" "exit 3"]`, "exit status 3"},
		wantIs:  []error{dns.ErrCommand},
		notRan:  []string{"p2"},
	}, {
		name:    "demote runs every command",
		cfg:     dns.ExecConfig{Demote: [][]string{sh("exit 4"), sh("touch " + dir + "/d2"), sh("exit 5")}},
		op:      "demote",
		wantMsg: []string{"exit status 4", "exit status 5", "demote command"},
		wantIs:  []error{dns.ErrCommand},
		ran:     []string{"d2"},
	}, {
		name:    "timeout",
		cfg:     dns.ExecConfig{Promote: [][]string{sh("exec sleep 60")}, Timeout: 50 * time.Millisecond, KillGrace: time.Second},
		op:      "promote",
		wantMsg: []string{"killed after timeout 50ms", `"exec sleep 60"`},
		wantIs:  []error{dns.ErrCommand, context.DeadlineExceeded},
	}, {
		name:    "timeout of a command ignoring SIGTERM",
		cfg:     dns.ExecConfig{Promote: [][]string{sh("trap '' TERM; sleep 60")}, Timeout: 50 * time.Millisecond, KillGrace: 50 * time.Millisecond},
		op:      "promote",
		wantMsg: []string{"killed after timeout 50ms"},
		wantIs:  []error{dns.ErrCommand},
	}, {
		name:    "missing program",
		cfg:     dns.ExecConfig{Promote: [][]string{{filepath.Join(dir, "no-such-program")}}},
		op:      "promote",
		wantMsg: []string{"no-such-program", "no such file"},
		wantIs:  []error{dns.ErrCommand, os.ErrNotExist},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newExec(t, tt.cfg)
			var err error
			if tt.op == "promote" {
				err = e.Promote(t.Context(), 1)
			} else {
				err = e.Demote(t.Context(), 1)
			}
			if err == nil {
				t.Fatal("err = nil")
			}
			for _, s := range tt.wantMsg {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
			for _, target := range tt.wantIs {
				if !errors.Is(err, target) {
					t.Errorf("errors.Is(%v, %v) = false", err, target)
				}
			}
			var ce *dns.CommandError
			if !errors.As(err, &ce) {
				t.Errorf("errors.As(*CommandError) failed on %v", err)
			}
			for _, f := range tt.ran {
				if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
					t.Errorf("command making %s did not run: %v", f, err)
				}
			}
			for _, f := range tt.notRan {
				if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
					t.Errorf("command making %s ran after a failure", f)
				}
			}
		})
	}
}

func TestNewExecValidates(t *testing.T) {
	tests := []struct {
		name string
		cfg  dns.ExecConfig
		want string
	}{
		{"no member", dns.ExecConfig{}, "Member"},
		{"empty argv", dns.ExecConfig{Member: "a", Demote: [][]string{{"true"}, {}}}, "Demote[1]"},
		{"empty program", dns.ExecConfig{Member: "a", Promote: [][]string{{""}}}, "Promote[0]"},
		{"negative timeout", dns.ExecConfig{Member: "a", Timeout: -1}, "Timeout"},
		{"negative grace", dns.ExecConfig{Member: "a", KillGrace: -1}, "KillGrace"},
	}
	for _, tt := range tests {
		_, err := dns.NewExec(tt.cfg)
		if !errors.Is(err, dns.ErrConfig) || !strings.Contains(err.Error(), "dns: invalid config: "+tt.want+": ") {
			t.Errorf("%s: err = %v, want an ErrConfig naming %s", tt.name, err, tt.want)
		}
	}
	// Every broken rule at once.
	_, err := dns.NewExec(dns.ExecConfig{Promote: [][]string{{}}, Timeout: -1, KillGrace: -1})
	for _, field := range []string{"Member", "Promote[0]", "Timeout", "KillGrace"} {
		if err == nil || !strings.Contains(err.Error(), "dns: invalid config: "+field+": ") {
			t.Errorf("NewExec with four broken fields: %v; want it to name %s", err, field)
		}
	}
}

// waitFile polls for a file with a deadline.
func waitFile(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear within 10s", path)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestExecSerializesCalls(t *testing.T) {
	dir := t.TempDir()
	order := filepath.Join(dir, "order")
	// The promote command announces it started, then waits for a release
	// file; only the test creates it.
	e := newExec(t, dns.ExecConfig{
		Promote: [][]string{sh(`echo promote-start >> ` + order + `; touch ` + dir + `/started; ` +
			`while [ ! -e ` + dir + `/release ]; do sleep 0.01; done; echo promote-end >> ` + order)},
		Demote: [][]string{sh(`echo demote >> ` + order)},
	})
	promoted := make(chan error, 1)
	go func() { promoted <- e.Promote(t.Context(), 1) }()
	waitFile(t, filepath.Join(dir, "started"))

	// A call whose context ends while it waits gives up, and does not
	// disturb the running command.
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if err := e.Demote(ctx, 1); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "previous call") {
		t.Fatalf("Demote while promote runs: err = %v, want a deadline while waiting", err)
	}
	demoted := make(chan error, 1)
	go func() { demoted <- e.Demote(t.Context(), 1) }()
	if err := os.WriteFile(filepath.Join(dir, "release"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := <-promoted; err != nil {
		t.Fatalf("Promote: %v", err)
	}
	if err := <-demoted; err != nil {
		t.Fatalf("Demote: %v", err)
	}
	b, err := os.ReadFile(order)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), "promote-start\npromote-end\ndemote\n"; got != want {
		t.Fatalf("order = %q, want %q", got, want)
	}
}

func TestExecCancelStopsItsOwnCommand(t *testing.T) {
	dir := t.TempDir()
	e := newExec(t, dns.ExecConfig{
		Promote:   [][]string{sh(`touch ` + dir + `/started; exec sleep 60`)},
		KillGrace: time.Second,
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- e.Promote(ctx, 1) }()
	waitFile(t, filepath.Join(dir, "started"))
	cancel()
	err := <-done
	var ce *dns.CommandError
	if !errors.Is(err, context.Canceled) || !errors.As(err, &ce) || ce.Timeout != 0 {
		t.Fatalf("err = %v, want a CommandError caused by cancellation, not a timeout", err)
	}
}

func TestExecConformance(t *testing.T) {
	switchertest.Run(t, switchertest.Harness{
		New: func(t *testing.T) switchertest.Backend {
			dir := t.TempDir()
			state := filepath.Join(dir, "state")
			broken := filepath.Join(dir, "broken")
			e := newExec(t, dns.ExecConfig{
				// Promote writes the token unless the backend is broken;
				// demote withdraws it.
				Promote: [][]string{sh(`test ! -e ` + broken + ` && echo "$HAKIT_TOKEN" > ` + state)},
				Demote:  [][]string{sh(`rm -f ` + state)},
			})
			return switchertest.Backend{
				Switcher: func(*testing.T, string) dns.Switcher { return e },
				Observe: func(context.Context) (bool, fence.Token, error) {
					b, err := os.ReadFile(state)
					if errors.Is(err, os.ErrNotExist) {
						return false, 0, nil
					} else if err != nil {
						return false, 0, err
					}
					tok, err := fence.Parse(strings.TrimSpace(string(b)))
					return true, tok, err
				},
				Break: func(t *testing.T) func() {
					if err := os.WriteFile(broken, nil, 0o644); err != nil {
						t.Fatal(err)
					}
					return func() { os.Remove(broken) }
				},
			}
		},
	})
}

func TestMultiConformance(t *testing.T) {
	switchertest.Run(t, switchertest.Harness{
		New: func(t *testing.T) switchertest.Backend {
			dir := t.TempDir()
			state := filepath.Join(dir, "state")
			h := &dns.Health{}
			e := newExec(t, dns.ExecConfig{
				Promote: [][]string{sh(`echo "$HAKIT_TOKEN" > ` + state)},
				Demote:  [][]string{sh(`rm -f ` + state)},
			})
			m := mustRetry(t, dns.Multi(h, e), dns.DefaultRetryPolicy())
			return switchertest.Backend{
				Switcher: func(*testing.T, string) dns.Switcher { return m },
				Observe: func(context.Context) (bool, fence.Token, error) {
					_, err := os.Stat(state)
					st := h.Status()
					if (err == nil) != (st.Role == dns.RoleActive) {
						return false, 0, errors.New("health and exec disagree")
					}
					return err == nil, st.Token, nil
				},
			}
		},
	})
}

func TestExecTimeoutKillsChildren(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc to find the child")
	}
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	e := newExec(t, dns.ExecConfig{
		Promote:   [][]string{sh(`sleep 60 & echo $! > ` + pidFile + `; wait`)},
		Timeout:   200 * time.Millisecond,
		KillGrace: 100 * time.Millisecond,
	})
	if err := e.Promote(t.Context(), 1); !errors.Is(err, dns.ErrCommand) {
		t.Fatalf("err = %v, want a timeout", err)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	stat := "/proc/" + strings.TrimSpace(string(b)) + "/stat"
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := os.ReadFile(stat)
		// Gone, or a zombie waiting for a parent that does not reap.
		if err != nil || strings.Contains(string(st), ") Z ") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the hook's child is still running 10s after the timeout: %s", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestExecMinimalEnvironment: a hook sees PATH, what Env lists and the
// HAKIT_ variables, never the rest of this process's environment (an
// admin token, cloud credentials).
func TestExecMinimalEnvironment(t *testing.T) {
	t.Setenv("HAMIRROR_ADMIN_TOKEN", "admin-secret")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "cloud-secret")
	t.Setenv("PASSED_ON", "from-parent")
	logs := newCapture()
	e := newExec(t, dns.ExecConfig{
		Member:  "db-2",
		Promote: [][]string{{"/usr/bin/env"}},
		Env:     []string{"SET=here", "PASSED_ON", "NOT_SET_ANYWHERE", "HAKIT_ROLE=spoofed"},
		Logger:  slog.New(logs),
	})
	if err := e.Promote(t.Context(), 7); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range logs.output() {
		got = append(got, m["line"])
	}
	slices.Sort(got)
	want := []string{"HAKIT_MEMBER=db-2", "HAKIT_ROLE=active", "HAKIT_TOKEN=7", "PASSED_ON=from-parent", "PATH=" + os.Getenv("PATH"), "SET=here"}
	if !slices.Equal(got, want) {
		t.Fatalf("the hook's environment is\n%q\nwant\n%q", got, want)
	}
}
