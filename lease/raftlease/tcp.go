package raftlease

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/hakit/hakit/lease/raftlease/internal/tcp"
)

// DefaultMaxFrameBytes bounds one message of the TCP transport (16 MiB),
// snapshots included: the store's snapshot must fit in it for a lagging
// or new member to catch up by snapshot. A member that would send a
// larger message drops it and logs an error naming MaxFrameBytes.
const DefaultMaxFrameBytes = tcp.DefaultMaxFrameBytes

// TCPConfig configures a TCP transport. Zero fields take the documented
// defaults; NewTCPTransport reports every field that breaks its rule.
type TCPConfig struct {
	// ID is the member this transport serves (its name, as Config.ID).
	ID string
	// Listener, if set, is where the transport accepts connections;
	// otherwise it listens on Addr. The transport closes it on Close.
	Listener net.Listener
	// Addr is the TCP address to listen on when Listener is nil.
	Addr string

	// TLS secures every connection with mutual TLS: it must hold this
	// member's certificate (Certificates) and the CA that signs member
	// certificates (RootCAs; ClientCAs defaults to it). ClientAuth is
	// RequireAndVerifyClientCert whatever it is set to, zero or that.
	// Each side's certificate must name a member (PeerIdentity): an
	// accepted connection's hello must claim the member its certificate
	// names, and a dialled peer's certificate must name the member that
	// was dialled; the address is not checked unless ServerName is set.
	TLS *tls.Config
	// Insecure allows plain TCP, with no TLS: trusted, isolated networks
	// and tests only. Anyone who can reach the port can then claim to be
	// any member and speak Raft for it. It must not be set with TLS.
	Insecure bool
	// PeerIdentity returns the member a verified peer certificate names.
	// Nil is raftcert.MemberID: the one URI SAN hakit://member/<ID>.
	PeerIdentity func(cert *x509.Certificate) (id string, err error)

	// QueueLen bounds the messages queued for one peer; beyond it they
	// are dropped. Default 1024.
	QueueLen int
	// MaxFrameBytes bounds one message, sent or received. Default
	// DefaultMaxFrameBytes; set the same on every member. The receive
	// buffer grows only as a frame's bytes arrive.
	MaxFrameBytes int
	// DialTimeout bounds one connection attempt, handshake included.
	// Default 1 s.
	DialTimeout time.Duration
	// WriteTimeout bounds one write to a peer. Default 5 s.
	WriteTimeout time.Duration
	// HandshakeTimeout bounds an accepted connection's TLS handshake and
	// hello. Default 5 s.
	HandshakeTimeout time.Duration
	// FrameTimeout bounds the arrival of one frame's payload once its
	// header has arrived. Default 30 s.
	FrameTimeout time.Duration
	// IdleTimeout closes an accepted connection that brings no frame for
	// this long; the peer dials again when it has something to send.
	// Default 2 min.
	IdleTimeout time.Duration
	// MaxPending bounds the accepted connections that have not finished
	// their handshake and hello; more are closed at once. Default 64.
	MaxPending int
	// MinBackoff and MaxBackoff bound the wait between connection
	// attempts to an unreachable peer, which doubles from the first to the
	// second. Defaults 20 ms and 1 s.
	MinBackoff, MaxBackoff time.Duration
	// Logger receives connection errors. Nil discards them.
	Logger *slog.Logger
}

func (c TCPConfig) internal() tcp.Config {
	return tcp.Config{
		ID: c.ID, Listener: c.Listener, Addr: c.Addr, TLS: c.TLS, Insecure: c.Insecure, PeerIdentity: c.PeerIdentity,
		QueueLen: c.QueueLen, MaxFrameBytes: c.MaxFrameBytes, DialTimeout: c.DialTimeout, WriteTimeout: c.WriteTimeout,
		HandshakeTimeout: c.HandshakeTimeout, FrameTimeout: c.FrameTimeout, IdleTimeout: c.IdleTimeout,
		MaxPending: c.MaxPending, MinBackoff: c.MinBackoff, MaxBackoff: c.MaxBackoff, Logger: c.Logger,
	}
}

// validate reports every rule of the config with defaults applied.
func tcpProblems(c tcp.Config) error {
	var errs []error
	for _, p := range c.Problems() {
		errs = append(errs, configError("TCPConfig."+p.Field, "%s", p.Rule))
	}
	return errors.Join(errs...)
}

// TCPTransport is the real Transport: one outgoing TCP connection per
// peer, fed by a bounded queue and a writer goroutine, so a slow or dead
// peer only loses its own messages; one incoming connection per peer
// (a newer one replaces the older), read by a goroutine. Connections are
// re-dialed with exponential backoff.
//
// What a peer can make it hold is bounded: connections before their
// hello (MaxPending, each for at most HandshakeTimeout), one connection
// per known member after it, frame buffers that grow only as bytes arrive
// up to MaxFrameBytes, and no connection kept without a frame for
// IdleTimeout. The accept loop backs off on errors (out of file
// descriptors, say) and returns only on Close.
type TCPTransport struct{ t *tcp.Transport }

var _ Transport = (*TCPTransport)(nil)

// NewTCPTransport validates cfg and listens; it returns a transport ready
// to Start. Without TLS it requires Insecure.
func NewTCPTransport(cfg TCPConfig) (*TCPTransport, error) {
	ic := cfg.internal().WithDefaults()
	if err := tcpProblems(ic); err != nil {
		return nil, err
	}
	return newTCP(ic)
}

func newTCP(ic tcp.Config) (*TCPTransport, error) {
	t, err := tcp.New(ic)
	if err != nil {
		return nil, err
	}
	return &TCPTransport{t: t}, nil
}

// Addr returns the address the transport listens on.
func (t *TCPTransport) Addr() net.Addr { return t.t.Addr() }

// Start begins accepting connections and delivering to h.
func (t *TCPTransport) Start(h Handler) error { return t.t.Start(h) }

// SetPeer sets the address of member id.
func (t *TCPTransport) SetPeer(id uint64, addr string) { t.t.SetPeer(id, addr) }

// RemovePeer forgets member id and closes its connections.
func (t *TCPTransport) RemovePeer(id uint64) { t.t.RemovePeer(id) }

// Send queues m for m.To, dropping it if the queue is full.
func (t *TCPTransport) Send(m *pb.Message) { t.t.Send(m) }

// Close stops the transport and waits for its goroutines.
func (t *TCPTransport) Close() error { return t.t.Close() }

// TCPStats counts what a TCP transport refused or gave up, since it
// started, and the connections it holds now.
type TCPStats struct {
	Refused        uint64 // connections closed before their hello was accepted: identity, hello, MaxPending
	BadFrames      uint64 // connections closed for a frame too large, damaged, misrouted or too slow
	Idle           uint64 // connections closed after IdleTimeout without a frame
	Replaced       uint64 // connections closed because the same peer connected again
	AcceptErrors   uint64 // failed Accepts (the loop backs off and goes on)
	Oversize       uint64 // outgoing messages dropped for exceeding MaxFrameBytes
	ActiveInbound  int    // inbound connections past their hello
	PendingInbound int    // inbound connections before their hello
}

// Stats returns the transport's counters.
func (t *TCPTransport) Stats() TCPStats { return TCPStats(t.t.Stats()) }
