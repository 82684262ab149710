package pgcdctest

import (
	"net"
	"strconv"
	"sync"
	"testing"
)

// Proxy forwards TCP connections on a loopback port to a server, and can
// freeze them (a frozen process, a half-open connection: nothing flows,
// nothing is closed) or cut them (a killed process). The server's TLS
// certificate is for 127.0.0.1, so verify-full works through it.
type Proxy struct {
	Port int
	ln   net.Listener
	to   string

	mu     sync.Mutex
	conns  map[net.Conn]bool
	frozen chan struct{} // closed while not frozen; replaced by Freeze
	down   bool          // Cut: refuse new connections too
}

// NewProxy starts a proxy to s, closed at cleanup.
func NewProxy(tb testing.TB, s *Server) *Proxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	thawed := make(chan struct{})
	close(thawed)
	p := &Proxy{Port: ln.Addr().(*net.TCPAddr).Port, ln: ln, to: net.JoinHostPort(s.Host, strconv.Itoa(s.Port)), conns: map[net.Conn]bool{}, frozen: thawed}
	go p.accept()
	tb.Cleanup(func() { ln.Close(); p.Cut() })
	return p
}

// DSN is s.DSN through the proxy.
func (p *Proxy) DSN(s *Server, user, password, db string) string {
	s2 := *s
	s2.Port = p.Port
	return s2.DSN(user, password, db)
}

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			c.Close()
			continue
		}
		go p.serve(c)
	}
}

func (p *Proxy) serve(c net.Conn) {
	s, err := net.Dial("tcp", p.to)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.down {
		p.mu.Unlock()
		c.Close()
		s.Close()
		return
	}
	p.conns[c], p.conns[s] = true, true
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go p.pipe(s, c, done)
	go p.pipe(c, s, done)
	<-done
	c.Close()
	s.Close()
	<-done
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, s)
	p.mu.Unlock()
}

// pipe copies src to dst, waiting while frozen before each write.
func (p *Proxy) pipe(dst, src net.Conn, done chan<- struct{}) {
	defer func() { done <- struct{}{} }()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			f := p.frozen
			p.mu.Unlock()
			<-f
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // io.EOF or a closed connection: either ends the pair
		}
	}
}

// Freeze stops all traffic through the proxy, in both directions, without
// closing anything, until Thaw.
func (p *Proxy) Freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.frozen:
		p.frozen = make(chan struct{})
	default:
	}
}

// Thaw lets traffic flow again.
func (p *Proxy) Thaw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.frozen:
	default:
		close(p.frozen)
	}
}

// Cut closes every connection and refuses new ones until Restore, as the
// death of the client process would.
func (p *Proxy) Cut() {
	p.mu.Lock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.Thaw()
}

// Restore accepts connections again after Cut.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}
