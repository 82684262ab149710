package main

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/ha"
)

// demoCluster is the shared state of the demo's members: where the source
// and the sink are, the Raft peers, and what the members report (role
// changes, acknowledged batches), which the demo's phases wait on.
type demoCluster struct {
	opts      DemoOptions
	dir       string
	sourceDir string
	sinkPath  string
	peers     map[string]string // member ID -> Raft address
	admin     *adminClient
	logger    *slog.Logger
	start     time.Time
	out       *demoPrinter

	generated atomic.Uint64 // records appended to the source
	applied   atomic.Uint64 // records acknowledged by the sink, all terms

	mu         sync.Mutex
	apis       map[string]string
	terms      []termInfo                // in the order they became active
	firstApply map[fence.Token]time.Time // first acknowledged batch of each term
	active     termInfo                  // the member that is active now (zero: none)
	refused    []refusal                 // sink writes refused, in order
	changed    chan struct{}             // closed and replaced on every note
}

// termInfo is one member's tenure as active member.
type termInfo struct {
	ID    string
	Token fence.Token
	At    time.Time // when it became active
}

func (c *demoCluster) setAPI(id, api string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.apis[id] = api
}

func (c *demoCluster) apiOf(id string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	api, ok := c.apis[id]
	return api, ok
}

// noteEvent is every member's ha.Config.OnEvent: it must not block.
func (c *demoCluster) noteEvent(id string, e ha.Event) {
	if e.Kind != ha.EventRole {
		return
	}
	c.mu.Lock()
	switch {
	case e.Role == ha.RoleActive:
		ti := termInfo{ID: id, Token: e.Token, At: e.Time}
		c.terms = append(c.terms, ti)
		c.active = ti
		c.out.event(c.since(e.Time), "%s active, term %d", id, e.Token)
	case c.active.ID == id:
		c.active = termInfo{}
	}
	c.signalLocked()
	c.mu.Unlock()
}

// refusal is a sink write that was refused.
type refusal struct {
	ID      string
	Token   fence.Token
	Records int // 0: a heartbeat
	Err     error
}

// noteRefused is called by a member's sink when a write fails.
func (c *demoCluster) noteRefused(id string, t fence.Token, n int, err error) {
	c.mu.Lock()
	c.refused = append(c.refused, refusal{ID: id, Token: t, Records: n, Err: err})
	c.signalLocked()
	c.mu.Unlock()
}

// refusedBy returns the first refused write of member id with token t.
func (c *demoCluster) refusedBy(id string, t fence.Token) (refusal, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.refused {
		if r.ID == id && r.Token == t {
			return r, true
		}
	}
	return refusal{}, false
}

// noteApply is called by a member's sink after each acknowledged batch.
func (c *demoCluster) noteApply(id string, t fence.Token, n int) {
	c.applied.Add(uint64(n))
	c.mu.Lock()
	if _, ok := c.firstApply[t]; !ok {
		c.firstApply[t] = time.Now()
		c.signalLocked()
	}
	c.mu.Unlock()
}

func (c *demoCluster) signalLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// snapshot returns the active member and a channel closed at the next
// change.
func (c *demoCluster) snapshot() (termInfo, chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.active, c.changed
}

// firstApplyOf returns when the term with token t first had a batch
// acknowledged.
func (c *demoCluster) firstApplyOf(t fence.Token) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	at, ok := c.firstApply[t]
	return at, ok
}

func (c *demoCluster) since(t time.Time) time.Duration { return t.Sub(c.start) }

// demoPrinter writes the demo's event lines and, between them, a live
// progress line: redrawn in place on a terminal, one line a second
// otherwise.
type demoPrinter struct {
	mu       sync.Mutex
	w        io.Writer
	terminal bool
	drawn    bool
	lastLine time.Time
}

func (p *demoPrinter) clearLocked() {
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
		p.drawn = false
	}
}

// event prints one timestamped line.
func (p *demoPrinter) event(at time.Duration, format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clearLocked()
	fmt.Fprintf(p.w, "[%5.2fs] %s\n", at.Seconds(), fmt.Sprintf(format, args...))
}

// line prints an untimed line.
func (p *demoPrinter) line(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clearLocked()
	fmt.Fprintf(p.w, format+"\n", args...)
}

// progress redraws the progress line.
func (p *demoPrinter) progress(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.terminal {
		fmt.Fprint(p.w, "\r\033[K"+s)
		p.drawn = true
		return
	}
	if now := time.Now(); now.Sub(p.lastLine) >= time.Second {
		p.lastLine = now
		fmt.Fprintln(p.w, "        "+strings.TrimSpace(s))
	}
}

// done removes the progress line.
func (p *demoPrinter) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clearLocked()
}

// runProgress redraws the progress line every 100 ms until stop closes.
func (c *demoCluster) runProgress(stop <-chan struct{}) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-stop:
			c.out.done()
			return
		case <-t.C:
		}
		a, _ := c.snapshot()
		who := "none (election)"
		if a.ID != "" {
			who = fmt.Sprintf("%s (term %d)", a.ID, a.Token)
		}
		gen, app := c.generated.Load(), c.applied.Load()
		behind := int64(gen) - int64(app)
		c.out.progress(fmt.Sprintf("  %5.1fs  source %7d  target %7d  behind %5d  active %s",
			time.Since(c.start).Seconds(), gen, app, behind, who))
	}
}
