package tcp

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/hakit/hakit/lease/raftlease/internal/raftid"
)

// Accept backoff, as net/http's Server does: a listener that fails (out
// of file descriptors, say) is retried after 5 ms, doubling up to 1 s,
// until it accepts again or the transport closes.
const (
	minAcceptDelay = 5 * time.Millisecond
	maxAcceptDelay = time.Second
)

// accept accepts connections until the transport closes. Errors of Accept
// (EMFILE, ENFILE, ECONNABORTED and any other) are retried with backoff:
// a member that stopped accepting would be cut off for good.
func (t *Transport) accept() {
	defer t.wg.Done()
	var delay time.Duration
	for {
		c, err := t.ln.Accept()
		if err != nil {
			if t.isClosed() {
				return
			}
			if errors.Is(err, net.ErrClosed) {
				t.log.Error("raftlease: listener closed under the transport; no more connections are accepted", "err", err)
				return
			}
			t.acceptErrs.Add(1)
			if delay == 0 {
				delay = minAcceptDelay
				t.log.Warn("raftlease: accept failed; retrying with backoff", "err", err)
			} else {
				delay = min(2*delay, maxAcceptDelay)
			}
			timer := time.NewTimer(delay)
			select {
			case <-t.done:
				timer.Stop()
				return
			case <-timer.C:
			}
			continue
		}
		if delay != 0 {
			t.log.Info("raftlease: accepting connections again")
			delay = 0
		}
		if !t.admit(c) {
			continue
		}
		t.wg.Add(1)
		go t.serve(c)
	}
}

func (t *Transport) isClosed() bool {
	select {
	case <-t.done:
		return true
	default:
		return false
	}
}

// admit registers a new connection, or refuses it if too many are still
// before their hello: those are the ones an attacker can open without a
// certificate, so they are what must be bounded.
func (t *Transport) admit(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || t.pending >= t.cfg.MaxPending {
		if !t.closed {
			t.refused.Add(1)
			t.log.Warn("raftlease: too many connections before their hello; refusing", "remote", c.RemoteAddr().String(), "max", t.cfg.MaxPending)
		}
		c.Close()
		return false
	}
	t.pending++
	t.inbound[c] = 0
	return true
}

// serve authenticates one incoming connection and reads its frames until
// it fails, goes idle, is replaced or the transport closes.
func (t *Transport) serve(raw net.Conn) {
	defer t.wg.Done()
	from := uint64(0)
	defer func() { t.release(raw, from) }()
	c, r, id, err := t.hello(raw)
	if err != nil {
		t.refused.Add(1)
		if !t.isClosed() {
			t.log.Warn("raftlease: refused incoming connection", "remote", raw.RemoteAddr().String(), "err", err)
		}
		return
	}
	from = id
	if !t.register(raw, from) {
		return
	}
	err = t.readMessages(c, r, from)
	switch {
	case t.isClosed():
	case errors.Is(err, ErrFrame):
		t.badFrames.Add(1)
		t.log.Warn("raftlease: closing connection after a bad frame", "peer", t.name(from), "err", err)
	case isTimeout(err):
		t.idle.Add(1)
		t.log.Debug("raftlease: closing idle connection", "peer", t.name(from), "idle", t.cfg.IdleTimeout)
	default:
		t.log.Debug("raftlease: incoming connection closed", "peer", t.name(from), "err", err)
	}
}

// hello runs the TLS handshake (if configured) and reads the hello within
// HandshakeTimeout. It returns the connection to read from, its reader
// and the peer it is from: a known member, the one the certificate names
// (under TLS), that means to reach this member.
func (t *Transport) hello(raw net.Conn) (net.Conn, *bufio.Reader, uint64, error) {
	_ = raw.SetDeadline(time.Now().Add(t.cfg.HandshakeTimeout))
	var c net.Conn = raw
	certName := ""
	if t.srv != nil {
		tc := tls.Server(raw, t.srv)
		if err := tc.Handshake(); err != nil {
			return nil, nil, 0, fmt.Errorf("TLS handshake: %w", err)
		}
		// The handshake checked that the certificate names a member.
		certName, _ = t.cfg.PeerIdentity(tc.ConnectionState().PeerCertificates[0])
		c = tc
	}
	r := bufio.NewReaderSize(c, 16<<10)
	p, _, err := readFrame(r, nil, helloLen)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("hello: %w", err)
	}
	from, to, err := decodeHello(p)
	switch {
	case err != nil:
		return nil, nil, 0, err
	case to != t.self:
		return nil, nil, 0, fmt.Errorf("peer %s meant to reach member %s, this is %s", t.name(from), t.name(to), t.cfg.ID)
	case certName != "" && raftid.Of(certName) != from:
		return nil, nil, 0, fmt.Errorf("%w: the certificate names member %q, the hello claims member %q", ErrIdentity, certName, t.name(from))
	case !t.known(from):
		return nil, nil, 0, fmt.Errorf("connection claims to be member %s, not a known peer", t.name(from))
	}
	_ = raw.SetDeadline(time.Time{})
	return c, r, from, nil
}

// register makes c the one inbound connection of peer from, closing the
// one it replaces: a peer that reconnects (it restarted, or its old
// connection hangs) is served on the newest.
func (t *Transport) register(c net.Conn, from uint64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.pending--
	t.inbound[c] = from
	if old, ok := t.byPeer[from]; ok {
		t.replaced.Add(1)
		old.Close()
	}
	t.byPeer[from] = c
	return true
}

// release forgets c once its serve ends.
func (t *Transport) release(c net.Conn, from uint64) {
	t.mu.Lock()
	if p, ok := t.inbound[c]; ok {
		if p == 0 {
			t.pending--
		}
		delete(t.inbound, c)
	}
	if t.byPeer[from] == c {
		delete(t.byPeer, from)
	}
	t.mu.Unlock()
	c.Close()
}

// readMessages delivers the frames of an authenticated connection. Each
// frame's header must arrive within IdleTimeout of the previous frame,
// and its payload within FrameTimeout of its header.
func (t *Transport) readMessages(c net.Conn, r *bufio.Reader, from uint64) error {
	t.mu.Lock()
	h := t.h
	t.mu.Unlock()
	var buf []byte
	for {
		_ = c.SetReadDeadline(time.Now().Add(t.cfg.IdleTimeout))
		n, sum, err := readHeader(r, t.cfg.MaxFrameBytes)
		if err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(t.cfg.FrameTimeout))
		var p []byte
		if p, buf, err = readPayload(r, buf, n, sum); err != nil {
			if isTimeout(err) {
				return fmt.Errorf("%w: %d-byte frame not received within FrameTimeout %v: %w", ErrFrame, n, t.cfg.FrameTimeout, err)
			}
			return err
		}
		m, err := decodeMessage(p)
		if cap(buf) > keepBuffer {
			buf = nil // a snapshot's buffer is not kept for small frames
		}
		if err != nil {
			return err
		}
		if m.GetFrom() != from || m.GetTo() != t.self {
			return fmt.Errorf("%w: message from %s to %s on the connection of %s to %s", ErrFrame,
				t.name(m.GetFrom()), t.name(m.GetTo()), t.name(from), t.cfg.ID)
		}
		h.Receive(m)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
