// Package tcp is raftlease's TCP transport: framed Raft messages over one
// outgoing connection per peer, mutual TLS that binds every link to a
// member's certificate, and bounds on everything a peer can make it hold.
// Users reach it through raftlease.NewTCPTransport, which documents the
// behaviour; it is internal so that its configuration has one public
// face.
package tcp

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/hakit/hakit/lease/raftlease/internal/raftid"
	"github.com/hakit/hakit/lease/raftlease/raftcert"
)

// Handler receives what the transport delivers; raftlease.Handler has the
// same methods. Its methods must not block.
type Handler interface {
	Receive(m *pb.Message)
	Unreachable(id uint64)
	SnapshotDone(id uint64, ok bool)
}

// Defaults of Config's zero fields; raftlease.TCPConfig documents them.
const (
	DefaultQueueLen         = 1024
	DefaultDialTimeout      = time.Second
	DefaultWriteTimeout     = 5 * time.Second
	DefaultHandshakeTimeout = 5 * time.Second
	DefaultFrameTimeout     = 30 * time.Second
	DefaultIdleTimeout      = 2 * time.Minute
	DefaultMaxPending       = 64
	DefaultMinBackoff       = 20 * time.Millisecond
	DefaultMaxBackoff       = time.Second
)

// Config configures a transport; raftlease.TCPConfig documents each field.
type Config struct {
	ID               string
	Listener         net.Listener
	Addr             string
	TLS              *tls.Config
	Insecure         bool
	PeerIdentity     func(*x509.Certificate) (string, error)
	QueueLen         int
	MaxFrameBytes    int
	DialTimeout      time.Duration
	WriteTimeout     time.Duration
	HandshakeTimeout time.Duration
	FrameTimeout     time.Duration
	IdleTimeout      time.Duration
	MaxPending       int
	MinBackoff       time.Duration
	MaxBackoff       time.Duration
	Logger           *slog.Logger
	// Name returns a member's name for logs, "" if unknown.
	Name func(id uint64) string
}

// WithDefaults returns c with its zero fields set to the defaults.
func (c Config) WithDefaults() Config {
	set := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.QueueLen == 0 {
		c.QueueLen = DefaultQueueLen
	}
	if c.MaxFrameBytes == 0 {
		c.MaxFrameBytes = DefaultMaxFrameBytes
	}
	if c.MaxPending == 0 {
		c.MaxPending = DefaultMaxPending
	}
	set(&c.DialTimeout, DefaultDialTimeout)
	set(&c.WriteTimeout, DefaultWriteTimeout)
	set(&c.HandshakeTimeout, DefaultHandshakeTimeout)
	set(&c.FrameTimeout, DefaultFrameTimeout)
	set(&c.IdleTimeout, DefaultIdleTimeout)
	set(&c.MinBackoff, DefaultMinBackoff)
	if c.MaxBackoff == 0 {
		c.MaxBackoff = max(DefaultMaxBackoff, c.MinBackoff)
	}
	if c.PeerIdentity == nil {
		c.PeerIdentity = raftcert.MemberID
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Name == nil {
		c.Name = func(uint64) string { return "" }
	}
	return c
}

// Problem is one broken rule of a Config: the field (as raftlease's
// TCPConfig names it) and the rule.
type Problem struct{ Field, Rule string }

// Problems returns every rule c breaks; none for a valid config. It does
// not change c.
func (c Config) Problems() []Problem {
	var ps []Problem
	bad := func(field, rule string, args ...any) {
		ps = append(ps, Problem{field, fmt.Sprintf(rule, args...)})
	}
	if c.ID == "" {
		bad("ID", "must not be empty")
	}
	if c.Listener == nil && c.Addr == "" {
		bad("Addr", "must not be empty without a Listener")
	}
	switch {
	case c.TLS == nil && !c.Insecure:
		bad("TLS", "plain TCP between members is refused: set TLS (mutual TLS with member certificates naming hakit://member/<ID>) "+
			"or, on a trusted isolated network or in tests only, Insecure")
	case c.TLS != nil && c.Insecure:
		bad("Insecure", "must not be set together with TLS")
	case c.TLS != nil:
		if len(c.TLS.Certificates) == 0 && c.TLS.GetCertificate == nil && c.TLS.GetClientCertificate == nil {
			bad("TLS.Certificates", "must hold this member's certificate")
		}
		if c.TLS.RootCAs == nil {
			bad("TLS.RootCAs", "must hold the CA that signs member certificates (system roots never sign them)")
		}
		if a := c.TLS.ClientAuth; a != tls.NoClientCert && a != tls.RequireAndVerifyClientCert {
			bad("TLS.ClientAuth", "%v would accept members without a verified certificate; leave it zero or set RequireAndVerifyClientCert", a)
		}
	}
	for _, d := range []struct {
		f string
		v time.Duration
	}{{"DialTimeout", c.DialTimeout}, {"WriteTimeout", c.WriteTimeout}, {"HandshakeTimeout", c.HandshakeTimeout},
		{"FrameTimeout", c.FrameTimeout}, {"IdleTimeout", c.IdleTimeout}, {"MinBackoff", c.MinBackoff}} {
		if d.v < 0 {
			bad(d.f, "%v is negative", d.v)
		}
	}
	if c.MaxBackoff < c.MinBackoff {
		bad("MaxBackoff", "%v is below MinBackoff %v", c.MaxBackoff, c.MinBackoff)
	}
	if c.QueueLen < 0 {
		bad("QueueLen", "%d is negative", c.QueueLen)
	}
	if c.MaxPending < 0 {
		bad("MaxPending", "%d is negative", c.MaxPending)
	}
	if c.MaxFrameBytes < 0 || c.MaxFrameBytes > 1<<30 {
		bad("MaxFrameBytes", "%d is outside [0, 1 GiB]", c.MaxFrameBytes)
	}
	return ps
}

// Stats counts what the transport refused or gave up.
type Stats struct {
	Refused        uint64 // connections closed before the hello was accepted: identity, hello, too many pending
	BadFrames      uint64 // connections closed for a frame that was too large, damaged or misrouted
	Idle           uint64 // connections closed after IdleTimeout without a frame
	Replaced       uint64 // connections closed because the same peer connected again
	AcceptErrors   uint64 // errors of the listener's Accept (the loop backs off and goes on)
	Oversize       uint64 // outgoing messages dropped for exceeding MaxFrameBytes
	ActiveInbound  int    // inbound connections past their hello
	PendingInbound int    // inbound connections before their hello
}

// Transport is the TCP transport; see raftlease.TCPTransport.
type Transport struct {
	cfg  Config
	self uint64
	ln   net.Listener
	log  *slog.Logger
	srv  *tls.Config // nil without TLS

	mu      sync.Mutex
	h       Handler
	peers   map[uint64]*peer
	inbound map[net.Conn]uint64 // every accepted connection -> its peer, 0 before the hello
	byPeer  map[uint64]net.Conn // the one connection past its hello per peer
	pending int
	closed  bool

	refused, badFrames, idle, replaced, acceptErrs, oversize atomic.Uint64

	wg   sync.WaitGroup
	done chan struct{}
}

type peer struct {
	id   uint64
	q    chan *pb.Message
	stop chan struct{}

	mu   sync.Mutex
	addr string
}

func (p *peer) address() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addr
}

// New applies cfg's defaults, checks its rules (reporting the first one
// broken; raftlease reports them all) and listens.
func New(cfg Config) (*Transport, error) {
	cfg = cfg.WithDefaults()
	if ps := cfg.Problems(); len(ps) > 0 {
		return nil, fmt.Errorf("raftlease: invalid config: TCPConfig.%s: %s", ps[0].Field, ps[0].Rule)
	}
	ln := cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", cfg.Addr); err != nil {
			return nil, fmt.Errorf("raftlease: listen on %q: %w", cfg.Addr, err)
		}
	}
	t := &Transport{
		cfg: cfg, self: raftid.Of(cfg.ID), ln: ln,
		log:     cfg.Logger.With("member", cfg.ID),
		peers:   map[uint64]*peer{},
		inbound: map[net.Conn]uint64{},
		byPeer:  map[uint64]net.Conn{},
		done:    make(chan struct{}),
	}
	if cfg.TLS != nil {
		t.srv = serverTLS(cfg.TLS, cfg.PeerIdentity)
	}
	return t, nil
}

// Addr returns the address the transport listens on.
func (t *Transport) Addr() net.Addr { return t.ln.Addr() }

// Start begins accepting connections and delivering to h.
func (t *Transport) Start(h Handler) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return errors.New("raftlease: transport closed")
	}
	if t.h != nil {
		return errors.New("raftlease: transport already started")
	}
	t.h = h
	for _, p := range t.peers {
		t.startPeer(p)
	}
	t.wg.Add(1)
	go t.accept()
	return nil
}

// SetPeer sets the address of member id.
func (t *Transport) SetPeer(id uint64, addr string) {
	if id == t.self {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	if p, ok := t.peers[id]; ok {
		p.mu.Lock()
		p.addr = addr
		p.mu.Unlock()
		return
	}
	p := &peer{id: id, addr: addr, q: make(chan *pb.Message, t.cfg.QueueLen), stop: make(chan struct{})}
	t.peers[id] = p
	if t.h != nil {
		t.startPeer(p)
	}
}

func (t *Transport) startPeer(p *peer) {
	t.wg.Add(1)
	go t.runPeer(p)
}

// known reports whether id is a peer this transport was told about.
func (t *Transport) known(id uint64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.peers[id]
	return ok
}

// RemovePeer forgets member id and closes its inbound connection.
func (t *Transport) RemovePeer(id uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p, ok := t.peers[id]; ok {
		delete(t.peers, id)
		close(p.stop)
	}
	if c, ok := t.byPeer[id]; ok {
		c.Close()
	}
}

// Send queues m for m.To, dropping it if the queue is full.
func (t *Transport) Send(m *pb.Message) {
	t.mu.Lock()
	p, h := t.peers[m.GetTo()], t.h
	t.mu.Unlock()
	if p == nil {
		return
	}
	select {
	case p.q <- m:
	default:
		if m.GetType() == pb.MsgSnap && h != nil {
			h.SnapshotDone(p.id, false)
		}
	}
}

// Stats returns the transport's counters.
func (t *Transport) Stats() Stats {
	t.mu.Lock()
	active, pending := len(t.byPeer), t.pending
	t.mu.Unlock()
	return Stats{
		Refused: t.refused.Load(), BadFrames: t.badFrames.Load(), Idle: t.idle.Load(), Replaced: t.replaced.Load(),
		AcceptErrors: t.acceptErrs.Load(), Oversize: t.oversize.Load(), ActiveInbound: active, PendingInbound: pending,
	}
}

// Close stops the transport and waits for its goroutines.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	close(t.done)
	for id, p := range t.peers {
		close(p.stop)
		delete(t.peers, id)
	}
	for c := range t.inbound {
		c.Close()
	}
	t.mu.Unlock()
	err := t.ln.Close()
	t.wg.Wait()
	return err
}

// name returns member id's name for logs.
func (t *Transport) name(id uint64) string {
	if n := t.cfg.Name(id); n != "" {
		return n
	}
	return fmt.Sprintf("%x", id)
}
