package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hakit/hakit/ha"
	"github.com/hakit/hakit/lease"
	"github.com/hakit/hakit/lease/clock"
	"github.com/hakit/hakit/lease/memlease"
	"github.com/hakit/hakit/storage/memstore"
)

const testToken = "test-admin-token"

// opCluster is three real ha.Nodes on an in-process election, each behind
// an httptest server, as the operator commands see a running cluster.
type opCluster struct {
	nodes   map[string]*ha.Node
	servers map[string]*httptest.Server
	ids     []string
}

func newOpCluster(t *testing.T, approvalOn string) *opCluster {
	t.Helper()
	el, err := memlease.NewElection(clock.Real(), memlease.Options{TTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	shared := memstore.New()
	c := &opCluster{nodes: map[string]*ha.Node{}, servers: map[string]*httptest.Server{}, ids: []string{"a", "b", "c"}}
	var mu sync.Mutex
	apis := map[string]string{}
	admin := &adminClient{http: &http.Client{Timeout: 10 * time.Second}, token: testToken}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for _, id := range c.ids {
		e, err := el.Member(id, "")
		if err != nil {
			t.Fatal(err)
		}
		n, err := ha.New(ha.Config{
			ID:      id,
			Elector: e,
			Work: func(ctx context.Context, _ lease.Term) error {
				<-ctx.Done()
				return nil
			},
			HoldOff:         100 * time.Millisecond,
			Shared:          shared,
			SharedPoll:      50 * time.Millisecond,
			RequireApproval: id == approvalOn,
			AdminToken:      testToken,
			Forward: func(ctx context.Context, l lease.Leader, command, to string) error {
				mu.Lock()
				api := apis[l.ID]
				mu.Unlock()
				return admin.post(ctx, api, command, to)
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(n.Handler())
		t.Cleanup(srv.Close)
		mu.Lock()
		apis[id] = srv.URL
		mu.Unlock()
		c.nodes[id], c.servers[id] = n, srv
		wg.Go(func() { _ = n.Run(ctx) })
	}
	return c
}

// members renders -members for the given IDs.
func (c *opCluster) members(ids ...string) string {
	var parts []string
	for _, id := range ids {
		parts = append(parts, id+"="+c.servers[id].URL)
	}
	return strings.Join(parts, ",")
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}
}

func (c *opCluster) active() string {
	for id, n := range c.nodes {
		if n.Status().Role == ha.RoleActive {
			return id
		}
	}
	return ""
}

// run runs a command as the binary would, returning exit code and output.
func run(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := runMain(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestStatusTable(t *testing.T) {
	c := newOpCluster(t, "")
	waitFor(t, "an active member", func() bool { return c.active() != "" })
	active := c.active()
	gone := httptest.NewServer(nil)
	gone.Close()
	code, out, errOut := run("status", "-members", c.members(c.ids...)+",z="+gone.URL)
	if code != 0 {
		t.Fatalf("status exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "MEMBER") {
		t.Fatalf("status table:\n%s", out)
	}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		switch {
		case f[0] == active:
			if f[1] != "active" || f[2] == "0" || f[3] != active || f[4] != "("+f[2]+")" {
				t.Errorf("active member's row: %q", l)
			}
		case f[0] == "z":
			if f[1] != "unreachable" {
				t.Errorf("unreachable member's row: %q", l)
			}
		default:
			if f[1] == "active" || f[2] != "0" {
				t.Errorf("standby's row: %q", l)
			}
		}
	}
}

func TestStatusFailsWhenNobodyAnswers(t *testing.T) {
	gone := httptest.NewServer(nil)
	gone.Close()
	code, _, errOut := run("status", "-members", "a="+gone.URL)
	if code != 1 || !strings.Contains(errOut, "no member answered") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}

func TestSwitchoverThroughStandby(t *testing.T) {
	c := newOpCluster(t, "")
	waitFor(t, "an active member", func() bool { return c.active() != "" })
	from := c.active()
	var standby, to string
	for _, id := range c.ids {
		if id != from {
			if standby == "" {
				standby = id
			} else {
				to = id
			}
		}
	}
	t.Setenv(EnvAdminToken, testToken)
	// Only the standby is named: it must forward to the active member.
	code, out, errOut := run("switchover", "-members", c.members(standby), "-to", to)
	if code != 0 {
		t.Fatalf("switchover exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "sent to "+standby) {
		t.Errorf("output %q", out)
	}
	waitFor(t, to+" active", func() bool { return c.active() == to })
}

func TestPauseResumeClusterWide(t *testing.T) {
	c := newOpCluster(t, "")
	waitFor(t, "an active member", func() bool { return c.active() != "" })
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(testToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	allPaused := func(want bool) func() bool {
		return func() bool {
			for _, n := range c.nodes {
				if n.Status().Paused != want {
					return false
				}
			}
			return true
		}
	}
	if code, _, errOut := run("pause", "-members", c.members(c.ids...), "-token-file", tokenFile); code != 0 {
		t.Fatalf("pause exit %d: %s", code, errOut)
	}
	waitFor(t, "every member paused", allPaused(true))
	if code, _, errOut := run("resume", "-members", c.members(c.ids...), "-token-file", tokenFile); code != 0 {
		t.Fatalf("resume exit %d: %s", code, errOut)
	}
	waitFor(t, "every member resumed", allPaused(false))
}

func TestAdminRefusals(t *testing.T) {
	c := newOpCluster(t, "b")
	waitFor(t, "an active member", func() bool { return c.active() != "" })
	all := c.members(c.ids...)

	t.Setenv(EnvAdminToken, "")
	if code, _, errOut := run("pause", "-members", all); code != 1 || !strings.Contains(errOut, "needs the admin token") {
		t.Errorf("pause without a token: exit %d, %q", code, errOut)
	}
	t.Setenv(EnvAdminToken, "wrong")
	code, _, errOut := run("pause", "-members", all)
	if code != 1 || !strings.Contains(errOut, "401") {
		t.Errorf("pause with a wrong token: exit %d, %q", code, errOut)
	}
	for id, n := range c.nodes {
		if n.Status().Paused {
			t.Errorf("member %s paused by a request with a wrong token", id)
		}
	}
	t.Setenv(EnvAdminToken, testToken)
	if code, _, errOut := run("approve", "-members", all, "-member", "a"); code != 1 || !strings.Contains(errOut, "409") {
		t.Errorf("approve on a member without require_approval: exit %d, %q", code, errOut)
	}
	if code, _, errOut := run("approve", "-members", all, "-member", "b"); code != 0 {
		t.Errorf("approve b: exit %d, %q", code, errOut)
	}
	if code, _, _ := run("approve", "-members", all); code != 2 {
		t.Errorf("approve without -member: exit %d, want 2", code)
	}
	if code, _, errOut := run("approve", "-members", all, "-member", "q"); code != 1 || !strings.Contains(errOut, `"q" is not among the members`) {
		t.Errorf("approve unknown member: exit %d, %q", code, errOut)
	}
}

func TestParseMembers(t *testing.T) {
	for _, tc := range []struct {
		in, want string // want: the IDs in order, or the error substring
		ok       bool
	}{
		{"b=http://h:2,a=http://h:1", "a b", true},
		{"a=http://h:1", "a", true},
		{"a=h:1", "not ID=URL", false},
		{"=http://h:1", "not ID=URL", false},
		{"a=http://h:1,a=http://h:2", `member "a" named twice`, false},
	} {
		ms, err := parseMembers(tc.in)
		if !tc.ok {
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("parseMembers(%q) = %v, want error %q", tc.in, err, tc.want)
			}
			continue
		}
		var ids []string
		for _, m := range ms {
			ids = append(ids, m.id)
		}
		if err != nil || strings.Join(ids, " ") != tc.want {
			t.Errorf("parseMembers(%q) = %v, %v", tc.in, ids, err)
		}
	}
}

func TestRunMainUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
	}{
		{nil, 2},
		{[]string{"frobnicate"}, 2},
		{[]string{"help"}, 0},
		{[]string{"run"}, 2},
		{[]string{"status", "extra"}, 2},
		{[]string{"status", "-h"}, 0},
		{[]string{"status"}, 1}, // no members named
	} {
		if code, _, errOut := run(tc.args...); code != tc.code {
			t.Errorf("hamirror %v: exit %d, want %d (%s)", tc.args, code, tc.code, errOut)
		}
	}
}

func TestRunRefusesInvalidConfig(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.json")
	if err := os.WriteFile(p, []byte(`{"id":"a"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := run("run", "-config", p)
	if code != 1 || !strings.Contains(errOut, "listen: is required") || !strings.Contains(errOut, p) {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}

func TestPostRetriesBusyMember(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+testToken || r.URL.Query().Get("to") != "b" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		if calls.Add(1) <= 2 {
			http.Error(w, "ha: transition in progress", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	admin := &adminClient{http: srv.Client(), token: testToken}
	if err := postRetryBusy(context.Background(), admin, srv.URL, "switchover", "b"); err != nil {
		t.Fatalf("postRetryBusy: %v", err)
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("%d calls, want 3", n)
	}

	busy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "ha: transition in progress", http.StatusServiceUnavailable)
	}))
	defer busy.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	err := postRetryBusy(ctx, admin, busy.URL, "switchover", "b")
	var ae *AdminError
	if !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable || !strings.Contains(err.Error(), "transition in progress") {
		t.Errorf("postRetryBusy against a member that stays busy = %v, want its 503", err)
	}
	t.Setenv(EnvAdminToken, testToken)
	if code, _, errOut := run("pause", "-members", "a="+busy.URL, "-timeout", "300ms"); code != 1 || !strings.Contains(errOut, "503") {
		t.Errorf("pause against a busy member: exit %d, %q", code, errOut)
	}
}

// TestStatusDoesNotWaitForAHungMember: a member that accepts the
// connection but never answers (a stopped process) is shown unreachable
// once the time limit passes, and the others are still shown.
func TestStatusDoesNotWaitForAHungMember(t *testing.T) {
	c := newOpCluster(t, "")
	waitFor(t, "an active member", func() bool { return c.active() != "" })
	release := make(chan struct{})
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer hung.Close()
	defer close(release)
	start := time.Now()
	code, out, errOut := run("status", "-members", c.members(c.ids...)+",z="+hung.URL, "-timeout", "500ms")
	if code != 0 {
		t.Fatalf("status exit %d: %s", code, errOut)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("status took %s with a hung member", d)
	}
	if !strings.Contains(out, "z       unreachable") || !strings.Contains(out, "active") {
		t.Errorf("status table:\n%s", out)
	}
}
