//go:build unix

package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/replicate/filelog"
	"github.com/hakit/hakit/storage"
)

var processCycles = flag.Int("hamirror.cycles", 2, "fault cycles of TestProcesses (kill -9 of the active member, SIGSTOP of its successor)")

// proc is one hamirror OS process.
type proc struct {
	id, cfg, log string
	cmd          *exec.Cmd
	exited       chan struct{}
	err          error // Wait's result, set before exited closes
}

// TestProcesses builds the daemon and runs three OS processes on loopback
// with the embedded Raft backend while records are fed into the source.
// Each cycle kill -9s the active member and restarts it, then SIGSTOPs
// the successor past the election timeout and SIGCONTs it, so a paused
// active member wakes up deposed. At the end the target must equal the
// source, and the checkpoint store's history (every committed checkpoint
// write, in Raft log order, from the members' debug logs) must show the
// terms one after another: tokens never decrease, each token belongs to
// one member, and the checkpoint never goes backwards.
func TestProcesses(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("the go tool is not on PATH")
		}
		t.Skip("the go tool is not on PATH; install Go to build the daemon for this test")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "hamirror")
	args := []string{"build", "-o", bin}
	if raceBuild {
		args = append(args, "-race")
	}
	if out, err := exec.Command(goTool, append(args, ".")...).CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cfgs := daemonConfigs(t, 3, "raft", nil)
	procs := map[string]*proc{}
	var mu sync.Mutex // guards procs against the cleanup
	start := func(c *Config) *proc {
		t.Helper()
		c.Log = LogConfig{Format: "json", Level: "debug"}
		p := &proc{id: c.ID, cfg: filepath.Join(dir, c.ID+".json"), log: filepath.Join(dir, c.ID+".log"), exited: make(chan struct{})}
		b, _ := json.Marshal(c)
		if err := os.WriteFile(p.cfg, b, 0o600); err != nil {
			t.Fatal(err)
		}
		logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		p.cmd = exec.Command(bin, "run", "-config", p.cfg)
		p.cmd.Stdout, p.cmd.Stderr = logf, logf
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { p.err = p.cmd.Wait(); logf.Close(); close(p.exited) }()
		mu.Lock()
		procs[c.ID] = p
		mu.Unlock()
		return p
	}
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, p := range procs {
			_ = p.cmd.Process.Signal(syscall.SIGCONT)
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	})
	t.Cleanup(func() {
		if t.Failed() {
			for _, c := range cfgs {
				dumpLog(t, filepath.Join(dir, c.ID+".log"))
			}
		}
	})
	byID := map[string]*Config{}
	for _, c := range cfgs {
		byID[c.ID] = c
		start(c)
	}

	// Feed the source at about 1000 records a second for the whole run.
	w, err := filelog.OpenWriter(cfgs[0].Source.Dir, filelog.WriterOptions{SegmentSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	var fed atomic.Int64
	feedCtx, stopFeed := context.WithCancel(context.Background())
	fedDone := make(chan error, 1)
	go func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for feedCtx.Err() == nil {
			<-tick.C
			n := fed.Load()
			batch := make([][]byte, 10)
			for i := range batch {
				batch[i] = changeRecord(uint64(n) + uint64(i))
			}
			if _, err := w.Append(batch...); err != nil {
				fedDone <- err
				return
			}
			fed.Add(10)
		}
		fedDone <- w.Close()
	}()
	defer stopFeed()

	admin := &adminClient{http: &http.Client{Timeout: time.Second}, token: testToken}
	// activeAfter returns the member that is active with a token above
	// after, skipping members that do not answer (a stopped process).
	activeAfter := func(after fence.Token) (string, fence.Token) {
		for _, c := range cfgs {
			var st memberStatus
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			err := admin.getJSON(ctx, c.Members[c.ID].API, "/status", &st)
			cancel()
			if err == nil && st.Role == "active" && st.Token > after {
				return c.ID, st.Token
			}
		}
		return "", 0
	}
	// replicating waits until member id has committed two more
	// checkpoints, so that each term works, and leaves its trace in the
	// store's history, before the next fault.
	replicating := func(id string) {
		t.Helper()
		api := byID[id].Members[id].API
		get := func() (uint64, bool) {
			var rs replicationStatus
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			err := admin.getJSON(ctx, api, "/replication", &rs)
			return rs.Checkpoints, err == nil
		}
		var base uint64
		waitFor(t, "the /replication of "+id, func() bool { n, ok := get(); base = n; return ok })
		waitFor(t, id+" to checkpoint", func() bool { n, ok := get(); return ok && n >= base+2 })
	}
	var active string
	var token fence.Token
	waitFor(t, "a first active member", func() bool { active, token = activeAfter(0); return active != "" })
	replicating(active)
	for cycle := range *processCycles {
		// kill -9 the active member and restart it at once; any member,
		// the restarted one included, may win the next term.
		p := procs[active]
		if err := p.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		<-p.exited
		t.Logf("cycle %d: kill -9 %s (token %d)", cycle, active, token)
		start(byID[active])
		killed := active
		waitFor(t, "a successor after kill -9 of "+killed, func() bool {
			a, tok := activeAfter(token)
			if a != "" {
				active, token = a, tok
			}
			return a != ""
		})

		replicating(active)

		// SIGSTOP the successor past the election timeout: it wakes up
		// deposed, and whatever it still tries to write must be refused.
		stopped := procs[active]
		if err := stopped.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		t.Logf("cycle %d: SIGSTOP %s (token %d)", cycle, active, token)
		waitFor(t, "a member to take over from the stopped "+active, func() bool {
			a, tok := activeAfter(token)
			if a != "" {
				active, token = a, tok
			}
			return a != ""
		})
		if err := stopped.cmd.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		t.Logf("cycle %d: SIGCONT %s; %s active (token %d)", cycle, stopped.id, active, token)
		replicating(active)
	}

	stopFeed()
	if err := <-fedDone; err != nil {
		t.Fatal(err)
	}
	n := int(fed.Load())
	waitTarget(t, fileTarget(cfgs[0].Sink.Path), n)
	for _, p := range procs {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	for id, p := range procs {
		select {
		case <-p.exited:
			if p.err != nil {
				t.Errorf("member %s after SIGTERM: %v (a clean shutdown exits 0)", id, p.err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("member %s did not exit after SIGTERM", id)
		}
	}
	checkTarget(t, fileTarget(cfgs[0].Sink.Path), n)
	checkHistory(t, procs)
}

// checkpointWrite is one committed checkpoint write from a member's log.
type checkpointWrite struct {
	Member  string
	Version storage.Version
	Token   fence.Token
	Pos     []byte
}

// checkHistory reads every "checkpoint committed" record of the members'
// logs (a killed process's are kept: its log file is appended to) and
// checks the store's history in version (Raft index) order.
func checkHistory(t *testing.T, procs map[string]*proc) {
	t.Helper()
	var hist []checkpointWrite
	for id, p := range procs {
		f, err := os.Open(p.log)
		if err != nil {
			t.Fatal(err)
		}
		// Read whole lines of any length: a debug line may be long.
		r := bufio.NewReader(f)
		for {
			line, err := r.ReadBytes('\n')
			var rec struct {
				Msg     string
				Version storage.Version
				Token   fence.Token
				Pos     string // hexadecimal ("nil" for none)
			}
			// A line cut by kill -9 does not decode; every whole line does.
			if json.Unmarshal(line, &rec) == nil && rec.Msg == "replicate: checkpoint committed" {
				pos, perr := hex.DecodeString(strings.TrimPrefix(rec.Pos, "nil"))
				if perr != nil {
					t.Fatalf("%s: checkpoint position %q is not hexadecimal: %v", p.log, rec.Pos, perr)
				}
				hist = append(hist, checkpointWrite{Member: id, Version: rec.Version, Token: rec.Token, Pos: pos})
			}
			if err != nil {
				break
			}
		}
		f.Close()
	}
	if len(hist) == 0 {
		t.Fatal("no checkpoint write in the members' logs")
	}
	slices.SortFunc(hist, func(a, b checkpointWrite) int { return int(a.Version) - int(b.Version) })
	owner := map[fence.Token]string{}
	terms := 0
	for i, h := range hist {
		if o, ok := owner[h.Token]; ok && o != h.Member {
			t.Errorf("token %d has writes of two members, %s and %s", h.Token, o, h.Member)
		} else if !ok {
			owner[h.Token] = h.Member
			terms++
		}
		if i == 0 {
			continue
		}
		prev := hist[i-1]
		if h.Version == prev.Version {
			t.Errorf("version %d committed twice (%s token %d, %s token %d)", h.Version, prev.Member, prev.Token, h.Member, h.Token)
		}
		if h.Token < prev.Token {
			t.Errorf("version %d: %s wrote with token %d after %s's token %d at version %d: overlapping terms",
				h.Version, h.Member, h.Token, prev.Member, prev.Token, prev.Version)
		}
		if string(h.Pos) < string(prev.Pos) {
			t.Errorf("version %d: checkpoint went backwards (%x after %x)", h.Version, h.Pos, prev.Pos)
		}
	}
	t.Logf("history: %d checkpoint writes in %d terms", len(hist), terms)
	if terms < 1+2**processCycles {
		t.Errorf("history shows %d terms, want at least %d (one per takeover)", terms, 1+2**processCycles)
	}
}

// dumpLog logs the info-and-above lines of a member's log, for a failed
// run.
func dumpLog(t *testing.T, path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Logf("%s: %v", path, err)
		return
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.Contains(l, `"level":"DEBUG"`) && l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	t.Logf("%s:\n%s", filepath.Base(path), strings.Join(lines, "\n"))
}
