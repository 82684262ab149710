package etcdtest

import (
	"fmt"
	"net/url"
	"strconv"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/pkg/v3/proxy"
	"go.uber.org/zap"
)

// Direction selects which way of a proxied link a fault applies to.
type Direction uint8

const (
	// ToServer is the client-to-server direction: requests, keepalives.
	ToServer Direction = 1 << iota
	// ToClient is the server-to-client direction: responses, watch events.
	ToClient
	// Both is both directions.
	Both = ToServer | ToClient
)

// Proxy is etcd's fault-injecting TCP proxy between clients and one
// Server. Clients made with Proxy.Client (or dialled to Endpoint) reach the
// server only through it, so a test can cut or slow their link without
// touching other clients. The proxy forwards raw TCP: TLS, when the server
// uses it, runs end to end between client and server.
//
// Faults apply to established connections as well as new ones. A
// blackhole drops bytes silently (the sender sees no error, as with a
// partition); after Unblackhole the interrupted connection is corrupt and
// the client notices and reconnects, which is what a healed partition
// looks like to gRPC. Pause holds bytes back instead and delivers them
// intact after Unpause. A Proxy is safe for concurrent use.
type Proxy struct {
	srv      proxy.Server
	endpoint string
	server   *Server
}

// proxyAttempts bounds the retries when the chosen port is taken between
// choosing it and listening on it (etcd's proxy cannot listen on port 0
// and report the port it got).
const proxyAttempts = 20

// NewProxy starts a proxy in front of s on a free port and closes it at the
// end of the test. The proxy listens on the port on all interfaces (the
// etcd proxy binds its port that way) and clients reach it on 127.0.0.1.
// It forwards to s's client port, so it keeps working across s.Restart.
// The proxy must not outlive s's test.
func NewProxy(t testing.TB, s *Server) *Proxy {
	t.Helper()
	var lastErr error
	for range proxyAttempts {
		port, err := loopbackPort()
		if err != nil {
			t.Fatalf("etcdtest: find a free port for the proxy: %v", err)
		}
		host := "127.0.0.1:" + strconv.Itoa(port)
		srv := proxy.NewServer(proxy.ServerConfig{
			Logger:      zap.NewNop(),
			From:        url.URL{Scheme: "tcp", Host: host},
			To:          url.URL{Scheme: "tcp", Host: s.Addr()},
			DialTimeout: time.Second,
		})
		select {
		case <-srv.Done(): // listening failed; NewServer closed it
			select {
			case lastErr = <-srv.Error():
			default:
				lastErr = fmt.Errorf("proxy on %s closed at once", host)
			}
			continue
		default:
		}
		// The proxy reports every accept, dial and copy error on a
		// channel with a small buffer and blocks when it is full; drain
		// it so that a stopped server cannot stall the proxy.
		go func() {
			for {
				select {
				case <-srv.Error():
				case <-srv.Done():
					return
				}
			}
		}()
		s.proxies.Add(1)
		t.Cleanup(func() {
			// Close waits for the proxied connections to end; a client
			// that is still open keeps one alive until the server stops,
			// so close in the background and let the server's cleanup
			// wait for it after stopping etcd.
			go func() {
				defer s.proxies.Done()
				srv.Close()
			}()
		})
		scheme := "http"
		if s.certs != nil {
			scheme = "https"
		}
		return &Proxy{srv: srv, endpoint: scheme + "://" + host, server: s}
	}
	t.Fatalf("etcdtest: start proxy after %d attempts: %v", proxyAttempts, lastErr)
	return nil
}

// Endpoint returns the URL clients use to reach the server through the
// proxy.
func (p *Proxy) Endpoint() string { return p.endpoint }

// ClientConfig is Server.ClientConfig with the proxy's endpoint instead of
// the server's.
func (p *Proxy) ClientConfig() clientv3.Config {
	return clientConfig([]string{p.endpoint}, p.server.TLSConfig())
}

// Client returns a client that reaches the server only through the proxy,
// closed at the end of the test. opts adjust its configuration.
func (p *Proxy) Client(t testing.TB, opts ...func(*clientv3.Config)) *clientv3.Client {
	t.Helper()
	return newClient(t, p.ClientConfig(), opts)
}

// Blackhole drops all bytes going in direction d until Unblackhole.
func (p *Proxy) Blackhole(d Direction) {
	if d&ToServer != 0 {
		p.srv.BlackholeTx()
	}
	if d&ToClient != 0 {
		p.srv.BlackholeRx()
	}
}

// Unblackhole stops dropping bytes in direction d.
func (p *Proxy) Unblackhole(d Direction) {
	if d&ToServer != 0 {
		p.srv.UnblackholeTx()
	}
	if d&ToClient != 0 {
		p.srv.UnblackholeRx()
	}
}

// Delay holds every chunk of bytes in direction d back by latency before
// forwarding it, until Undelay.
func (p *Proxy) Delay(d Direction, latency time.Duration) {
	if d&ToServer != 0 {
		p.srv.DelayTx(latency, 0)
	}
	if d&ToClient != 0 {
		p.srv.DelayRx(latency, 0)
	}
}

// Undelay removes the latency added by Delay in direction d.
func (p *Proxy) Undelay(d Direction) {
	if d&ToServer != 0 {
		p.srv.UndelayTx()
	}
	if d&ToClient != 0 {
		p.srv.UndelayRx()
	}
}

// Pause stops forwarding in direction d; the bytes wait in the proxy and
// are delivered in order after Unpause.
func (p *Proxy) Pause(d Direction) {
	if d&ToServer != 0 {
		p.srv.PauseTx()
	}
	if d&ToClient != 0 {
		p.srv.PauseRx()
	}
}

// Unpause resumes forwarding in direction d.
func (p *Proxy) Unpause(d Direction) {
	if d&ToServer != 0 {
		p.srv.UnpauseTx()
	}
	if d&ToClient != 0 {
		p.srv.UnpauseRx()
	}
}

// Heal removes every fault in both directions: blackhole, delay and pause.
func (p *Proxy) Heal() {
	p.Unblackhole(Both)
	p.Undelay(Both)
	p.Unpause(Both)
}
