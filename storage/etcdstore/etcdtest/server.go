// Package etcdtest starts real etcd servers inside a test process, in the
// spirit of net/http/httptest.
//
// Start runs a single-member etcd (go.etcd.io/etcd/server/v3/embed) on
// loopback ports that the kernel chooses, with a data directory from
// t.TempDir, a 10 ms heartbeat and a 100 ms election timeout, so it is
// ready in well under a second and many test processes can run side by
// side. Everything it starts is stopped by t.Cleanup. NewProxy puts etcd's
// fault-injecting TCP proxy (go.etcd.io/etcd/pkg/v3/proxy) in front of a
// server, so a test can cut, delay or pause one client's link while other
// clients keep talking to the server directly.
//
// The servers are for tests: writes are not fsynced (see Start), and the
// certificates of WithTLS are generated per server and valid for a day.
package etcdtest

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// StartTimeout bounds how long Start and Restart wait for the server to
// become ready before they fail the test.
const StartTimeout = 20 * time.Second

// Option configures Start.
type Option func(*options)

type options struct {
	tls       bool
	configure []func(*embed.Config)
}

// WithTLS serves the client port over TLS with client certificate
// authentication. Start generates a fresh self-signed CA, a server
// certificate for 127.0.0.1, ::1 and localhost, and a client certificate;
// Client and ClientConfig use them, and TLSConfig returns them for clients
// built by hand. Without WithTLS the server speaks plain HTTP/2.
func WithTLS() Option { return func(o *options) { o.tls = true } }

// WithConfig lets a test adjust the embed.Config after etcdtest has filled
// it in and before the server starts (for example MaxRequestBytes, a
// logger, or UnsafeNoFsync = false). It runs again on every Restart. Do not
// change the listen URLs or the data directory: Restart relies on them.
func WithConfig(f func(*embed.Config)) Option {
	return func(o *options) { o.configure = append(o.configure, f) }
}

// Server is a running single-member etcd. Its methods are safe for
// concurrent use, except that Stop and Restart must not race each other.
type Server struct {
	dir   string
	certs *certs // nil without TLS
	opts  options

	mu        sync.Mutex
	etcd      *embed.Etcd // nil while stopped
	clientURL url.URL     // port fixed after the first start
	peerURL   url.URL

	proxies sync.WaitGroup // proxies whose Close has not returned yet
}

// Start starts an etcd server and waits until it serves requests. It fails
// the test (t.Fatal) if the server does not start within StartTimeout. The
// server and its data directory are removed at the end of the test.
//
// For speed the server skips fsync (embed.Config.UnsafeNoFsync): data
// survives Stop and Restart within the process but not a machine crash.
// Use WithConfig to turn fsync back on where a test measures durability or
// disk cost.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s := &Server{dir: t.TempDir()}
	for _, o := range opts {
		o(&s.opts)
	}
	scheme := "http"
	if s.opts.tls {
		c, err := newCerts(t.TempDir())
		if err != nil {
			t.Fatalf("etcdtest: generate TLS certificates: %v", err)
		}
		s.certs = c
		scheme = "https"
	}
	// Port 0: the kernel picks a free port when etcd listens, so
	// concurrent test processes never collide; start records the ports
	// it got so that Restart comes back on the same ones.
	s.clientURL = url.URL{Scheme: scheme, Host: "127.0.0.1:0"}
	s.peerURL = url.URL{Scheme: "http", Host: "127.0.0.1:0"}
	t.Cleanup(func() {
		s.Stop()
		s.proxies.Wait()
	})
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.etcd != nil {
		return nil
	}
	cfg := embed.NewConfig()
	cfg.Name = "etcdtest"
	cfg.Dir = s.dir
	cfg.TickMs = 10
	cfg.ElectionMs = 100
	cfg.ListenClientUrls = []url.URL{s.clientURL}
	cfg.AdvertiseClientUrls = []url.URL{s.clientURL}
	cfg.ListenPeerUrls = []url.URL{s.peerURL}
	cfg.AdvertisePeerUrls = []url.URL{s.peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.EnableGRPCGateway = false
	cfg.UnsafeNoFsync = true
	// Let clients ping as often as a test likes (the default 5 s minimum
	// makes the server drop clients with short keepalive intervals).
	cfg.GRPCKeepAliveMinTime = time.Millisecond
	if s.certs != nil {
		cfg.ClientTLSInfo.CertFile = s.certs.serverCert
		cfg.ClientTLSInfo.KeyFile = s.certs.serverKey
		cfg.ClientTLSInfo.TrustedCAFile = s.certs.caFile
		cfg.ClientTLSInfo.ClientCertAuth = true
	}
	for _, f := range s.opts.configure {
		f(cfg)
	}

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("etcdtest: start etcd in %s on %s: %w", s.dir, s.clientURL.Host, err)
	}
	timer := time.NewTimer(StartTimeout)
	defer timer.Stop()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return fmt.Errorf("etcdtest: etcd on %s failed while starting: %w", s.clientURL.Host, err)
	case <-timer.C:
		e.Close()
		return fmt.Errorf("etcdtest: etcd on %s not ready after %v", s.clientURL.Host, StartTimeout)
	}
	s.clientURL.Host = e.Clients[0].Addr().String()
	s.peerURL.Host = e.Peers[0].Addr().String()
	s.etcd = e
	return nil
}

// Endpoints returns the client URLs of the server, for clientv3.Config.
// They stay the same across Restart.
func (s *Server) Endpoints() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return []string{s.clientURL.String()}
}

// Addr returns the host:port of the client listener.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.clientURL.Host
}

// Etcd returns the embedded server, or nil while the server is stopped.
func (s *Server) Etcd() *embed.Etcd {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.etcd
}

// TLSConfig returns a new client TLS configuration that trusts the
// server's CA and presents a client certificate, or nil if the server was
// started without WithTLS.
func (s *Server) TLSConfig() *tls.Config {
	if s.certs == nil {
		return nil
	}
	return s.certs.clientConfig()
}

// ClientConfig returns a client configuration for the server: its
// endpoints, its TLS settings, a 5 s dial timeout, a logger that discards
// everything, and reconnection tuned for tests (retry at most every
// 500 ms, give up on a connection attempt after 2 s instead of gRPC's
// 20 s, so a client whose handshake fell into a blackhole recovers soon
// after the link heals). Change it freely before calling clientv3.New.
func (s *Server) ClientConfig() clientv3.Config {
	return clientConfig(s.Endpoints(), s.TLSConfig())
}

// Client returns a client connected directly to the server, closed at the
// end of the test. opts adjust the configuration (see ClientConfig) before
// the client is made.
func (s *Server) Client(t testing.TB, opts ...func(*clientv3.Config)) *clientv3.Client {
	t.Helper()
	return newClient(t, s.ClientConfig(), opts)
}

// Stop stops the server and closes its listeners; clients see their
// requests fail or wait for a Restart. The data directory is kept. Stop of
// a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	e := s.etcd
	s.etcd = nil
	s.mu.Unlock()
	if e != nil {
		e.Close()
	}
}

// Restart stops the server if it runs and starts it again on the same data
// directory and the same ports, so existing clients reconnect by
// themselves. It fails the test if the server does not come back (for
// instance because another process took the port in between, which is
// possible but unlikely: the port was bound until Stop).
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
}

func clientConfig(endpoints []string, tc *tls.Config) clientv3.Config {
	return clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		TLS:         tc,
		Logger:      zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  10 * time.Millisecond,
				Multiplier: 1.6,
				Jitter:     0.2,
				MaxDelay:   500 * time.Millisecond,
			},
			MinConnectTimeout: 2 * time.Second,
		})},
	}
}

func newClient(t testing.TB, cfg clientv3.Config, opts []func(*clientv3.Config)) *clientv3.Client {
	t.Helper()
	for _, o := range opts {
		o(&cfg)
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		t.Fatalf("etcdtest: client for %v: %v", cfg.Endpoints, err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// loopbackPort asks the kernel for a free loopback TCP port. The port is
// free when this returns but not reserved; callers retry on a collision.
func loopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
