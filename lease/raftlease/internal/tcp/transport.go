// Package tcp is raftlease's TCP transport: framed Raft messages over one
// outgoing connection per peer, with optional mutual TLS. Users reach it
// through raftlease.NewTCPTransport, which documents the behaviour; it is
// internal so that its configuration has one public face.
package tcp

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/hakit/hakit/lease/raftlease/internal/raftid"
)

// Handler receives what the transport delivers; raftlease.Handler has the
// same methods. Its methods must not block.
type Handler interface {
	Receive(m *pb.Message)
	Unreachable(id uint64)
	SnapshotDone(id uint64, ok bool)
}

// Config configures a TCP transport. Zero fields take the documented
// defaults.
type Config struct {
	// ID is the member this transport serves (its name, as Config.ID).
	ID string
	// Listener, if set, is where the transport accepts connections;
	// otherwise it listens on Addr. The transport closes it on Close.
	Listener net.Listener
	// Addr is the TCP address to listen on when Listener is nil.
	Addr string
	// TLS, if set, secures every connection: accepted ones with
	// tls.Server, dialed ones with tls.Client (ServerName defaults to the
	// peer's host). For mutual TLS set ClientAuth and ClientCAs as well as
	// Certificates and RootCAs. TLS proves that a peer holds a trusted
	// certificate, not which member it is: give the group's members a CA
	// of their own, or check names in VerifyPeerCertificate.
	TLS *tls.Config
	// QueueLen bounds the messages queued for one peer; beyond it they
	// are dropped. Default 1024.
	QueueLen int
	// MaxFrameBytes bounds one incoming message. Default 64 MiB.
	MaxFrameBytes int
	// DialTimeout bounds one connection attempt, handshake included.
	// Default 1 s.
	DialTimeout time.Duration
	// WriteTimeout bounds one write to a peer. Default 5 s.
	WriteTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between connection
	// attempts to an unreachable peer, which doubles from the first to the
	// second. Defaults 20 ms and 1 s.
	MinBackoff, MaxBackoff time.Duration
	// Logger receives connection errors. Nil discards them.
	Logger *slog.Logger
}

// Transport is the real Transport: one outgoing TCP connection per
// peer, fed by a bounded queue and a writer goroutine, so a slow or dead
// peer only loses its own messages; incoming connections are read by a
// goroutine each. Connections are re-dialed with exponential backoff.
//
// An incoming connection must name a known peer (SetPeer) and this member
// in its first frame, and every message on it must be from that peer to
// this member; anything else closes it. Without TLS that is no
// authentication: anyone who can reach the port can speak Raft to the
// member, so use mutual TLS wherever the network is not trusted.
type Transport struct {
	cfg  Config
	self uint64
	ln   net.Listener
	log  *slog.Logger

	mu      sync.Mutex
	h       Handler
	peers   map[uint64]*peer
	inbound map[net.Conn]struct{}
	closed  bool

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

// New listens and returns a transport ready to Start.
func New(cfg Config) (*Transport, error) {
	if cfg.ID == "" {
		return nil, errors.New("raftlease: invalid config: TCPConfig.ID: must not be empty")
	}
	if cfg.QueueLen <= 0 {
		cfg.QueueLen = 1024
	}
	if cfg.MaxFrameBytes <= 0 {
		cfg.MaxFrameBytes = DefaultMaxFrameBytes
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = time.Second
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 5 * time.Second
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 20 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(time.Second, cfg.MinBackoff)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ln := cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", cfg.Addr); err != nil {
			return nil, fmt.Errorf("raftlease: listen on %q: %w", cfg.Addr, err)
		}
	}
	return &Transport{
		cfg: cfg, self: raftid.Of(cfg.ID), ln: ln,
		log:     cfg.Logger.With("member", cfg.ID),
		peers:   map[uint64]*peer{},
		inbound: map[net.Conn]struct{}{},
		done:    make(chan struct{}),
	}, nil
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

// RemovePeer forgets member id.
func (t *Transport) RemovePeer(id uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p, ok := t.peers[id]; ok {
		delete(t.peers, id)
		close(p.stop)
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

func (t *Transport) accept() {
	defer t.wg.Done()
	for {
		c, err := t.ln.Accept()
		if err != nil {
			select {
			case <-t.done:
				return
			default:
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			t.log.Warn("raftlease: accept failed", "err", err)
			return
		}
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			c.Close()
			return
		}
		t.inbound[c] = struct{}{}
		t.wg.Add(1)
		t.mu.Unlock()
		go t.serve(c)
	}
}

// serve reads the frames of one incoming connection until it fails.
func (t *Transport) serve(raw net.Conn) {
	defer t.wg.Done()
	defer func() {
		t.mu.Lock()
		delete(t.inbound, raw)
		t.mu.Unlock()
		raw.Close()
	}()
	var c net.Conn = raw
	_ = raw.SetDeadline(time.Now().Add(t.cfg.DialTimeout + time.Second))
	if t.cfg.TLS != nil {
		tc := tls.Server(raw, t.cfg.TLS)
		if err := tc.Handshake(); err != nil {
			t.log.Warn("raftlease: TLS handshake with incoming peer failed", "remote", raw.RemoteAddr().String(), "err", err)
			return
		}
		c = tc
	}
	r := bufio.NewReaderSize(c, 64<<10)
	p, buf, err := readFrame(r, nil, helloLen)
	if err == nil {
		var from, to uint64
		if from, to, err = decodeHello(p); err == nil && to != t.self {
			err = fmt.Errorf("raftlease: peer %x at %s meant to reach member %x, this is %x", from, raw.RemoteAddr(), to, t.self)
		}
		if err == nil && !t.known(from) {
			err = fmt.Errorf("raftlease: connection from %s claims to be %x, not a known member", raw.RemoteAddr(), from)
		}
		if err == nil {
			_ = raw.SetDeadline(time.Time{})
			err = t.readMessages(r, buf, from)
		}
	}
	select {
	case <-t.done:
	default:
		t.log.Debug("raftlease: incoming connection closed", "remote", raw.RemoteAddr().String(), "err", err)
	}
}

func (t *Transport) readMessages(r *bufio.Reader, buf []byte, from uint64) error {
	t.mu.Lock()
	h := t.h
	t.mu.Unlock()
	for {
		p, nbuf, err := readFrame(r, buf, t.cfg.MaxFrameBytes)
		if err != nil {
			return err
		}
		buf = nbuf
		m, err := decodeMessage(p)
		if err != nil {
			return err
		}
		if m.GetFrom() != from || m.GetTo() != t.self {
			return fmt.Errorf("raftlease: message from %x to %x on the connection of %x to %x", m.GetFrom(), m.GetTo(), from, t.self)
		}
		h.Receive(m)
	}
}
