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
	"google.golang.org/protobuf/proto"

	"github.com/hakit/hakit/lease/raftlease/internal/raftid"
)

// runPeer writes the queue of one peer to its connection, dialing as
// needed. Messages queued while the peer cannot be reached are dropped:
// Raft resends what still matters once the peer answers.
func (t *Transport) runPeer(p *peer) {
	defer t.wg.Done()
	var (
		oc      *outConn
		backoff = t.cfg.MinBackoff
		batch   []*pb.Message
	)
	defer func() {
		if oc != nil {
			oc.c.Close()
		}
	}()
	for {
		select {
		case <-p.stop:
			return
		case m := <-p.q:
			batch = append(batch[:0], m)
		}
		if oc != nil && oc.closed() {
			// The peer closed the connection (it restarted, say) while
			// there was nothing to send: dial afresh rather than lose
			// this batch in a dead socket.
			oc.c.Close()
			oc = nil
		}
		if oc == nil {
			c, err := t.dial(p)
			if err != nil {
				t.log.Debug("raftlease: cannot reach peer", "peer", t.name(p.id), "addr", p.address(), "err", err)
				t.dropQueued(p, batch)
				if !sleep(p.stop, backoff) {
					return
				}
				backoff = min(2*backoff, t.cfg.MaxBackoff)
				continue
			}
			oc, backoff = &outConn{c: c, bw: bufio.NewWriterSize(c, 64<<10), dead: watchClose(c, p.stop)}, t.cfg.MinBackoff
		}
		batch = t.fitting(p, drain(p.q, batch))
		if err := t.writeBatch(oc, batch); err != nil {
			t.log.Debug("raftlease: write to peer failed", "peer", t.name(p.id), "err", err)
			oc.c.Close()
			oc = nil
			t.dropQueued(p, batch)
			continue
		}
		t.reportSnapshots(p.id, batch, true)
	}
}

// outConn is an outgoing connection with its buffers.
type outConn struct {
	c     net.Conn
	bw    *bufio.Writer
	dead  <-chan struct{} // closed when the peer closes c
	frame []byte
}

func (oc *outConn) closed() bool {
	select {
	case <-oc.dead:
		return true
	default:
		return false
	}
}

// sleep waits d unless stop closes first; it reports whether d passed.
func sleep(stop <-chan struct{}, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-stop:
		return false
	case <-timer.C:
		return true
	}
}

// drain adds what is queued already to batch, so that one flush covers
// it.
func drain(q chan *pb.Message, batch []*pb.Message) []*pb.Message {
	for len(batch) < 256 {
		select {
		case m := <-q:
			batch = append(batch, m)
		default:
			return batch
		}
	}
	return batch
}

// fitting drops (see tooLarge) the messages of batch that exceed
// MaxFrameBytes and returns the others.
func (t *Transport) fitting(p *peer, batch []*pb.Message) []*pb.Message {
	out := batch[:0]
	for _, m := range batch {
		if n := proto.Size(m); n > t.cfg.MaxFrameBytes {
			t.tooLarge(p, m, n)
			continue
		}
		out = append(out, m)
	}
	return out
}

// writeBatch writes batch to oc and flushes, within WriteTimeout.
func (t *Transport) writeBatch(oc *outConn, batch []*pb.Message) error {
	_ = oc.c.SetWriteDeadline(time.Now().Add(t.cfg.WriteTimeout))
	defer func() {
		if cap(oc.frame) > keepBuffer {
			oc.frame = nil // do not hold a snapshot's encoding between batches
		}
	}()
	for _, m := range batch {
		var err error
		if oc.frame, err = appendMessageFrame(oc.frame[:0], m); err != nil {
			return err
		}
		if _, err := oc.bw.Write(oc.frame); err != nil {
			return err
		}
	}
	return oc.bw.Flush()
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
