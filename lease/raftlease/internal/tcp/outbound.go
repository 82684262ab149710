package tcp

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/hakit/hakit/lease/raftlease/internal/raftid"
)

// runPeer writes the queue of one peer to its connection, dialing as
// needed. Messages queued while the peer cannot be reached are dropped:
// Raft resends what still matters once the peer answers.
func (t *Transport) runPeer(p *peer) {
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
			dead = watchClose(c, p.stop)
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
		sent := batch[:0]
		for _, m := range batch {
			if frame, err = appendMessageFrame(frame[:0], m); err != nil {
				break
			}
			if len(frame)-frameHeaderLen > t.cfg.MaxFrameBytes {
				t.tooLarge(p, m, len(frame)-frameHeaderLen)
				continue
			}
			if _, err = bw.Write(frame); err != nil {
				break
			}
			sent = append(sent, m)
		}
		if cap(frame) > keepBuffer {
			frame = nil // do not hold a snapshot's encoding between batches
		}
		batch = sent
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

// tooLarge drops m, whose encoding of n bytes the peer would refuse, and
// says so: the fix is to raise MaxFrameBytes on every member.
func (t *Transport) tooLarge(p *peer, m *pb.Message, n int) {
	t.oversize.Add(1)
	t.log.Error("raftlease: message too large for MaxFrameBytes; dropped (raise TCPConfig.MaxFrameBytes on every member)",
		"peer", t.name(p.id), "type", m.GetType().String(), "bytes", n, "max", t.cfg.MaxFrameBytes)
	if m.GetType() == pb.MsgSnap {
		t.h.SnapshotDone(p.id, false)
	}
}

// watchClose returns a channel closed once c's peer closes it or c fails.
// The connection carries nothing back, so any read ending means the other
// side is gone; a writer that has been idle would otherwise only learn it
// by losing its next batch. It also closes c when stop closes, so that a
// write blocked on a peer that does not read cannot hold up Close.
func watchClose(c net.Conn, stop <-chan struct{}) <-chan struct{} {
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
	go func() {
		select {
		case <-stop:
			c.Close()
		case <-dead:
		}
	}()
	return dead
}

// dropQueued reports the loss of batch and of everything queued for p.
func (t *Transport) dropQueued(p *peer, batch []*pb.Message) {
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

func (t *Transport) reportSnapshots(id uint64, batch []*pb.Message, ok bool) {
	for _, m := range batch {
		if m.GetType() == pb.MsgSnap {
			t.h.SnapshotDone(id, ok)
		}
	}
}

func (t *Transport) dial(p *peer) (net.Conn, error) {
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
		cfg := clientTLS(t.cfg.TLS, p.id, t.name(p.id), t.cfg.PeerIdentity, raftid.Of)
		tc := tls.Client(raw, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			if errors.Is(err, ErrIdentity) {
				t.log.Warn("raftlease: the member at this address is not the one dialled", "peer", t.name(p.id), "addr", addr, "err", err)
			}
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
