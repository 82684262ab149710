package raftlease

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// TCPConfig configures a TCP transport. Zero fields take the documented
// defaults.
type TCPConfig struct {
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

// TCPTransport is the real Transport: one outgoing TCP connection per
// peer, fed by a bounded queue and a writer goroutine, so a slow or dead
// peer only loses its own messages; incoming connections are read by a
// goroutine each. Connections are re-dialed with exponential backoff.
//
// An incoming connection must name a known peer (SetPeer) and this member
// in its first frame, and every message on it must be from that peer to
// this member; anything else closes it. Without TLS that is no
// authentication: anyone who can reach the port can speak Raft to the
// member, so use mutual TLS wherever the network is not trusted.
type TCPTransport struct {
	cfg  TCPConfig
	self uint64
	ln   net.Listener
	log  *slog.Logger

	mu      sync.Mutex
	h       Handler
	peers   map[uint64]*tcpPeer
	inbound map[net.Conn]struct{}
	closed  bool

	wg   sync.WaitGroup
	done chan struct{}
}

type tcpPeer struct {
	id   uint64
	q    chan *pb.Message
	stop chan struct{}

	mu   sync.Mutex
	addr string
}

func (p *tcpPeer) address() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addr
}

// NewTCPTransport listens and returns a transport ready to Start.
func NewTCPTransport(cfg TCPConfig) (*TCPTransport, error) {
	if cfg.ID == "" {
		return nil, configError("TCPConfig.ID", "must not be empty")
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
	return &TCPTransport{
		cfg: cfg, self: RaftID(cfg.ID), ln: ln,
		log:     cfg.Logger.With("member", cfg.ID),
		peers:   map[uint64]*tcpPeer{},
		inbound: map[net.Conn]struct{}{},
		done:    make(chan struct{}),
	}, nil
}

// Addr returns the address the transport listens on.
func (t *TCPTransport) Addr() net.Addr { return t.ln.Addr() }

// Start begins accepting connections and delivering to h.
func (t *TCPTransport) Start(h Handler) error {
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
func (t *TCPTransport) SetPeer(id uint64, addr string) {
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
	p := &tcpPeer{id: id, addr: addr, q: make(chan *pb.Message, t.cfg.QueueLen), stop: make(chan struct{})}
	t.peers[id] = p
	if t.h != nil {
		t.startPeer(p)
	}
}

func (t *TCPTransport) startPeer(p *tcpPeer) {
	t.wg.Add(1)
	go t.runPeer(p)
}

// known reports whether id is a peer this transport was told about.
func (t *TCPTransport) known(id uint64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.peers[id]
	return ok
}

// RemovePeer forgets member id.
func (t *TCPTransport) RemovePeer(id uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p, ok := t.peers[id]; ok {
		delete(t.peers, id)
		close(p.stop)
	}
}

// Send queues m for m.To, dropping it if the queue is full.
func (t *TCPTransport) Send(m *pb.Message) {
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
func (t *TCPTransport) Close() error {
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

func (t *TCPTransport) accept() {
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
func (t *TCPTransport) serve(raw net.Conn) {
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

func (t *TCPTransport) readMessages(r *bufio.Reader, buf []byte, from uint64) error {
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

// runPeer writes the queue of one peer to its connection, dialing as
// needed. Messages queued while the peer cannot be reached are dropped:
// Raft resends what still matters once the peer answers.
func (t *TCPTransport) runPeer(p *tcpPeer) {
	defer t.wg.Done()
	var (
		conn    net.Conn
		bw      *bufio.Writer
		backoff = t.cfg.MinBackoff
		frame   []byte
		batch   []*pb.Message
		dead    <-chan struct{} // closed when the peer closes conn
	)
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	for {
		var m *pb.Message
		select {
		case <-p.stop:
			return
		case m = <-p.q:
		}
		batch = append(batch[:0], m)
		if conn != nil {
			select {
			case <-dead:
				// The peer closed the connection (it restarted, say)
				// while there was nothing to send: dial afresh rather
				// than lose this batch in a dead socket.
				conn.Close()
				conn = nil
			default:
			}
		}
		if conn == nil {
			c, err := t.dial(p)
			if err != nil {
				t.log.Debug("raftlease: cannot reach peer", "peer", fmt.Sprintf("%x", p.id), "addr", p.address(), "err", err)
				t.dropQueued(p, batch)
				timer := time.NewTimer(backoff)
				select {
				case <-p.stop:
					timer.Stop()
					return
				case <-timer.C:
				}
				backoff = min(2*backoff, t.cfg.MaxBackoff)
				continue
			}
			conn, bw, backoff = c, bufio.NewWriterSize(c, 64<<10), t.cfg.MinBackoff
			dead = watchClose(c)
		}
		// Batch what is queued already into one flush.
	drain:
		for len(batch) < 256 {
			select {
			case m := <-p.q:
				batch = append(batch, m)
			default:
				break drain
			}
		}
		_ = conn.SetWriteDeadline(time.Now().Add(t.cfg.WriteTimeout))
		var err error
		for _, m := range batch {
			var data []byte
			if data, err = proto.Marshal(m); err != nil {
				break
			}
			frame = appendFrame(frame[:0], data)
			if _, err = bw.Write(frame); err != nil {
				break
			}
		}
		if err == nil {
			err = bw.Flush()
		}
		if err != nil {
			t.log.Debug("raftlease: write to peer failed", "peer", fmt.Sprintf("%x", p.id), "err", err)
			conn.Close()
			conn = nil
			t.dropQueued(p, batch)
			continue
		}
		t.reportSnapshots(p.id, batch, true)
	}
}

// watchClose returns a channel closed once c's peer closes it or c fails.
// The connection carries nothing back, so any read ending means the other
// side is gone; a writer that has been idle would otherwise only learn it
// by losing its next batch.
func watchClose(c net.Conn) <-chan struct{} {
	dead := make(chan struct{})
	go func() {
		defer close(dead)
		var b [1]byte
		for {
			if _, err := c.Read(b[:]); err != nil {
				return
			}
		}
	}()
	return dead
}

// dropQueued reports the loss of batch and of everything queued for p.
func (t *TCPTransport) dropQueued(p *tcpPeer, batch []*pb.Message) {
	for {
		select {
		case m := <-p.q:
			batch = append(batch, m)
			continue
		default:
		}
		break
	}
	t.mu.Lock()
	h := t.h
	t.mu.Unlock()
	h.Unreachable(p.id)
	t.reportSnapshots(p.id, batch, false)
}

func (t *TCPTransport) reportSnapshots(id uint64, batch []*pb.Message, ok bool) {
	for _, m := range batch {
		if m.GetType() == pb.MsgSnap {
			t.h.SnapshotDone(id, ok)
		}
	}
}

func (t *TCPTransport) dial(p *tcpPeer) (net.Conn, error) {
	addr := p.address()
	if addr == "" {
		return nil, fmt.Errorf("raftlease: no address for peer %x", p.id)
	}
	ctx, cancel := context.WithTimeout(context.Background(), t.cfg.DialTimeout)
	defer cancel()
	go func() {
		select {
		case <-p.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := raw
	if t.cfg.TLS != nil {
		cfg := t.cfg.TLS.Clone()
		if cfg.ServerName == "" {
			if host, _, err := net.SplitHostPort(addr); err == nil {
				cfg.ServerName = host
			}
		}
		tc := tls.Client(raw, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, fmt.Errorf("raftlease: TLS handshake with %s: %w", addr, err)
		}
		c = tc
	}
	_ = c.SetWriteDeadline(time.Now().Add(t.cfg.WriteTimeout))
	if _, err := c.Write(appendFrame(nil, encodeHello(t.self, p.id))); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}
