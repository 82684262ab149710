package raftlease

import (
	"context"
	"hash/crc32"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
)

// partTransport wraps a real TCP transport and drops every message to or
// from the members it is told to cut off: a network partition as the
// member sees it. cutOut holds the members its sends to are lost, cutIn
// those whose messages it ignores.
type partTransport struct {
	*TCPTransport
	mu     sync.Mutex
	cutOut map[uint64]bool
	cutIn  map[uint64]bool
}

func (p *partTransport) isCut(id uint64, in bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if in {
		return p.cutIn[id]
	}
	return p.cutOut[id]
}

// setCut cuts the member off from ids both ways.
func (p *partTransport) setCut(ids map[uint64]bool) {
	p.mu.Lock()
	p.cutOut, p.cutIn = ids, ids
	p.mu.Unlock()
}

// setCutIn sets only whom the member ignores.
func (p *partTransport) setCutIn(ids map[uint64]bool) {
	p.mu.Lock()
	p.cutIn = ids
	p.mu.Unlock()
}

func (p *partTransport) Send(m *pb.Message) {
	if !p.isCut(m.GetTo(), false) {
		p.TCPTransport.Send(m)
	}
}

func (p *partTransport) Start(h Handler) error { return p.TCPTransport.Start(partHandler{h, p}) }

type partHandler struct {
	Handler
	p *partTransport
}

func (h partHandler) Receive(m *pb.Message) {
	if !h.p.isCut(m.GetFrom(), true) {
		h.Handler.Receive(m)
	}
}

// cluster is a group of real members on loopback TCP.
type cluster struct {
	t      testing.TB
	ids    []string
	peers  map[string]string
	dirs   map[string]string
	lns    map[string]net.Listener
	nets   map[string]*partTransport
	groups map[string]*Group
	tweak  func(*Config)
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("RAFTLEASE_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// newCluster makes a group of n members "a", "b", ... and starts them, or
// only those named in only.
func newCluster(t *testing.T, n int, tweak func(*Config), only ...string) *cluster {
	t.Helper()
	c := &cluster{t: t, peers: map[string]string{}, dirs: map[string]string{}, lns: map[string]net.Listener{},
		nets: map[string]*partTransport{}, groups: map[string]*Group{}, tweak: tweak}
	for i := range n {
		id := string(rune('a' + i))
		c.addSlot(id)
	}
	for _, id := range c.ids {
		if len(only) == 0 || contains(only, id) {
			c.start(id)
		}
	}
	t.Cleanup(c.closeAll)
	return c
}

func (c *cluster) addSlot(id string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	c.ids = append(c.ids, id)
	c.peers[id] = ln.Addr().String()
	c.lns[id] = ln
	c.dirs[id] = c.t.TempDir()
}

func (c *cluster) config(id string) Config {
	peers := map[string]string{}
	for k, v := range c.peers {
		peers[k] = v
	}
	cfg := Config{
		ID: id, Peers: peers, DataDir: c.dirs[id],
		// 20 ms ticks keep tests fast; 25 of them leave a fence window
		// of 330 ms, enough for a heavily loaded 2-core machine's
		// scheduler (a leader that misses it fences itself, correctly,
		// but the test expecting it to hold would fail).
		TickInterval: 20 * time.Millisecond, ElectionTicks: 25, DriftMargin: 150 * time.Millisecond,
		Logger: testLogger(c.t).With("m", id),
	}
	if c.tweak != nil {
		c.tweak(&cfg)
	}
	return cfg
}

func (c *cluster) transport(id string) *partTransport {
	c.t.Helper()
	ln := c.lns[id]
	delete(c.lns, id)
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", c.peers[id]); err != nil {
			c.t.Fatalf("listen again on %s: %v", c.peers[id], err)
		}
	}
	tr, err := NewTCPTransport(TCPConfig{ID: id, Listener: ln, Insecure: true, MinBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, Logger: testLogger(c.t).With("m", id)})
	if err != nil {
		c.t.Fatal(err)
	}
	return &partTransport{TCPTransport: tr}
}

func (c *cluster) start(id string) *Group {
	c.t.Helper()
	return c.startWith(id, c.config(id))
}

func (c *cluster) startWith(id string, cfg Config) *Group {
	c.t.Helper()
	tr := c.transport(id)
	cfg.Transport = tr
	g, err := Start(context.Background(), cfg)
	if err != nil {
		tr.Close()
		c.t.Fatalf("start %s: %v", id, err)
	}
	c.nets[id], c.groups[id] = tr, g
	return g
}

func (c *cluster) stop(id string) {
	if g := c.groups[id]; g != nil {
		g.Close()
		delete(c.groups, id)
	}
}

// crash stops a member without resigning: the transport goes first, so
// nothing it would say on the way out reaches the others.
func (c *cluster) crash(id string) {
	if g := c.groups[id]; g != nil {
		c.nets[id].setCut(map[uint64]bool{RaftID("a"): true, RaftID("b"): true, RaftID("c"): true, RaftID("d"): true, RaftID("e"): true})
		g.mu.Lock()
		g.closing = true
		g.mu.Unlock()
		close(g.stopc)
		<-g.donec
		g.tr.Close()
		g.db.Close()
		delete(c.groups, id)
	}
}

func (c *cluster) closeAll() {
	for id := range c.groups {
		c.stop(id)
	}
}

// isolate cuts member id off from every other member (or heals it).
func (c *cluster) isolate(id string, on bool) {
	for _, other := range c.ids {
		if other == id {
			continue
		}
		c.setLink(id, other, !on)
	}
}

func (c *cluster) setLink(a, b string, up bool) {
	for _, pair := range [][2]string{{a, b}, {b, a}} {
		tr := c.nets[pair[0]]
		if tr == nil {
			continue
		}
		tr.mu.Lock()
		for _, cut := range []*map[uint64]bool{&tr.cutOut, &tr.cutIn} {
			m := map[uint64]bool{}
			for k, v := range *cut {
				m[k] = v
			}
			if up {
				delete(m, RaftID(pair[1]))
			} else {
				m[RaftID(pair[1])] = true
			}
			*cut = m
		}
		tr.mu.Unlock()
	}
}

// raftLeader waits until the running members (except those in skip)
// agree on one Raft leader among them and returns it.
func (c *cluster) raftLeader(ctx context.Context, skip ...string) *Group {
	c.t.Helper()
	for {
		var lead uint64
		agree := true
		for id, g := range c.groups {
			if contains(skip, id) {
				continue
			}
			g.mu.Lock()
			l := g.leadSeen
			g.mu.Unlock()
			if l == 0 || (lead != 0 && l != lead) {
				agree = false
			}
			lead = l
		}
		if agree && lead != 0 {
			for id, g := range c.groups {
				if RaftID(id) == lead && !contains(skip, id) {
					return g
				}
			}
		}
		select {
		case <-ctx.Done():
			c.t.Fatalf("no agreed Raft leader: %v", ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

func crc32c(p []byte) uint32 { return crc32.Checksum(p, castagnoli) }

// eventually polls f until it returns nil, failing the test with f's last
// error after d.
func eventually(t *testing.T, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, d, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
