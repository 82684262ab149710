package raftlease

import (
	"crypto/tls"
	"log/slog"
	"net"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/hakit/hakit/lease/raftlease/internal/tcp"
)

// DefaultMaxFrameBytes bounds one incoming message of the TCP transport,
// snapshots included: the store's snapshot must fit in it for a lagging
// or new member to catch up by snapshot.
const DefaultMaxFrameBytes = tcp.DefaultMaxFrameBytes

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
type TCPTransport struct{ t *tcp.Transport }

var _ Transport = (*TCPTransport)(nil)

// NewTCPTransport listens and returns a transport ready to Start.
func NewTCPTransport(cfg TCPConfig) (*TCPTransport, error) {
	t, err := tcp.New(tcp.Config{
		ID: cfg.ID, Listener: cfg.Listener, Addr: cfg.Addr, TLS: cfg.TLS,
		QueueLen: cfg.QueueLen, MaxFrameBytes: cfg.MaxFrameBytes,
		DialTimeout: cfg.DialTimeout, WriteTimeout: cfg.WriteTimeout,
		MinBackoff: cfg.MinBackoff, MaxBackoff: cfg.MaxBackoff, Logger: cfg.Logger,
	})
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

// RemovePeer forgets member id.
func (t *TCPTransport) RemovePeer(id uint64) { t.t.RemovePeer(id) }

// Send queues m for m.To, dropping it if the queue is full.
func (t *TCPTransport) Send(m *pb.Message) { t.t.Send(m) }

// Close stops the transport and waits for its goroutines.
func (t *TCPTransport) Close() error { return t.t.Close() }
