package raftlease

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hakit/hakit/fence"
)

// TestRestartFromDisk: every member stops; restarted from their data
// directories they hold the same state, including the fence, across
// snapshots and log compaction.
func TestRestartFromDisk(t *testing.T) {
	c := newCluster(t, 3, func(cfg *Config) { cfg.SnapshotEntries, cfg.CompactionMargin = 16, 4 })
	ctx := testCtx(t, 20*time.Second)
	g := c.groups["a"]
	term, err := g.Campaign(ctx)
	if err != nil {
		t.Fatal(err)
	}
	acked := writeKeys(t, g, term.Token(), "k", 50)
	for _, id := range c.ids {
		c.stop(id)
	}
	for _, id := range c.ids {
		c.start(id)
	}
	lead := c.raftLeader(ctx)
	for _, g := range c.groups {
		checkKeys(t, g, acked)
	}
	if _, err := lead.Store().Put(ctx, term.Token()-1, "k/0", nil); !errors.Is(err, fence.ErrStale) {
		t.Fatalf("Put below the fence after restart: %v, want fence.ErrStale", err)
	}
	t2, err := c.groups["b"].Campaign(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if t2.Token() <= term.Token() {
		t.Fatalf("token %d after restart, not above %d", t2.Token(), term.Token())
	}
}

// TestCorruptLog: a member whose write-ahead log is damaged before its
// tail refuses to start with an error naming the file; the others carry
// on.
func TestCorruptLog(t *testing.T) {
	c := newCluster(t, 3, nil)
	ctx := testCtx(t, 20*time.Second)
	term, err := c.groups["a"].Campaign(ctx)
	if err != nil {
		t.Fatal(err)
	}
	writeKeys(t, c.groups["a"], term.Token(), "k", 30)
	c.stop("c")

	wals, _ := filepath.Glob(filepath.Join(c.dirs["c"], "*.wal"))
	if len(wals) == 0 {
		t.Fatalf("no WAL segment in %s", c.dirs["c"])
	}
	sort.Strings(wals)
	data, err := os.ReadFile(wals[0])
	if err != nil {
		t.Fatal(err)
	}
	// Damage a byte in the middle, with intact records after it: not a
	// torn tail but corruption.
	data[len(data)/2] ^= 0xff
	if err := os.WriteFile(wals[0], data, 0o600); err != nil {
		t.Fatal(err)
	}
	tr := c.transport("c")
	defer tr.Close()
	cfg := c.config("c")
	cfg.Transport = tr
	_, err = Start(context.Background(), cfg)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Start with a damaged log: %v, want ErrCorrupt", err)
	}
	if !strings.Contains(err.Error(), filepath.Base(wals[0])) {
		t.Fatalf("error %q does not name the file %s", err, filepath.Base(wals[0]))
	}
	t.Logf("Start refused: %v", err)
	// The two others still form a quorum.
	writeKeys(t, c.groups["a"], term.Token(), "after", 3)
}

// TestTornTail: a member whose log ends in a half-written record (a crash
// mid-write) starts, cutting the torn record off, and catches up.
func TestTornTail(t *testing.T) {
	c := newCluster(t, 3, nil)
	ctx := testCtx(t, 20*time.Second)
	term, err := c.groups["a"].Campaign(ctx)
	if err != nil {
		t.Fatal(err)
	}
	acked := writeKeys(t, c.groups["a"], term.Token(), "k", 10)
	c.stop("c")
	wals, _ := filepath.Glob(filepath.Join(c.dirs["c"], "*.wal"))
	sort.Strings(wals)
	last := wals[len(wals)-1]
	f, err := os.OpenFile(last, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	// The start of a record header promising more bytes than follow.
	if _, err := f.Write([]byte{1, 0xff, 0, 0, 0, 7}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	logs := &lockedWriter{w: new(bytes.Buffer)}
	cfg := c.config("c")
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	g := c.startWith("c", cfg)
	c.raftLeader(ctx)
	checkKeys(t, g, acked)
	if out := logs.String(); !strings.Contains(out, "torn") {
		t.Fatalf("the torn tail was not reported; logs:\n%s", out)
	}
}

// lockedWriter serialises writes from the group's goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}
