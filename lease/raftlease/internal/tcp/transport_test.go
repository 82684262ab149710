package tcp

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/hakit/hakit/lease/raftlease/internal/raftid"
)

// recorder is a Handler that keeps what it is given.
type recorder struct {
	mu          sync.Mutex
	msgs        []*pb.Message
	got         chan struct{}
	unreachable map[uint64]int
}

func newRecorder() *recorder {
	return &recorder{got: make(chan struct{}, 1024), unreachable: map[uint64]int{}}
}

func (r *recorder) Receive(m *pb.Message) {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
	select {
	case r.got <- struct{}{}:
	default:
	}
}

func (r *recorder) Unreachable(id uint64) {
	r.mu.Lock()
	r.unreachable[id]++
	r.mu.Unlock()
}

func (r *recorder) SnapshotDone(uint64, bool) {}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs)
}

func msg(from, to string, i uint64) *pb.Message {
	return &pb.Message{Type: pb.MsgApp.Enum(), From: new(raftid.Of(from)), To: new(raftid.Of(to)), Index: new(i)}
}

func newTCP(t *testing.T, id string, tlsCfg *tls.Config) (*Transport, *recorder) {
	t.Helper()
	return newTCPWith(t, Config{ID: id, TLS: tlsCfg})
}

// newTCPWith starts a transport on a loopback port with cfg; without TLS
// it runs Insecure.
func newTCPWith(t *testing.T, cfg Config) (*Transport, *recorder) {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	cfg.Insecure = cfg.TLS == nil
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff, cfg.MaxBackoff = time.Millisecond, 20*time.Millisecond
	}
	tr, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := newRecorder()
	if err := tr.Start(r); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr, r
}

// eventually polls f until it returns nil, failing the test with f's last
// error after d.
func eventually(t *testing.T, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, d, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitCount(t *testing.T, r *recorder, n int) {
	t.Helper()
	eventually(t, 10*time.Second, "messages to arrive", func() error {
		if c := r.count(); c < n {
			return errors.New("too few")
		}
		return nil
	})
}

func TestTCPTransportDelivers(t *testing.T) {
	a, _ := newTCP(t, "a", nil)
	b, rb := newTCP(t, "b", nil)
	a.SetPeer(raftid.Of("b"), b.Addr().String())
	b.SetPeer(raftid.Of("a"), a.Addr().String())
	for i := range 100 {
		a.Send(msg("a", "b", uint64(i)))
	}
	waitCount(t, rb, 100)
	rb.mu.Lock()
	defer rb.mu.Unlock()
	for i, m := range rb.msgs {
		if m.GetIndex() != uint64(i) {
			t.Fatalf("message %d has index %d: reordered on one connection", i, m.GetIndex())
		}
	}
}

// TestTCPTransportReconnects: the peer goes away and comes back on the
// same address; messages flow again after the backoff.
func TestTCPTransportReconnects(t *testing.T) {
	a, ra := newTCP(t, "a", nil)
	b, rb := newTCP(t, "b", nil)
	addr := b.Addr().String()
	a.SetPeer(raftid.Of("b"), addr)
	b.SetPeer(raftid.Of("a"), a.Addr().String())
	a.Send(msg("a", "b", 1))
	waitCount(t, rb, 1)
	b.Close()
	eventually(t, 10*time.Second, "the sender to report b unreachable", func() error {
		a.Send(msg("a", "b", 2))
		ra.mu.Lock()
		defer ra.mu.Unlock()
		if ra.unreachable[raftid.Of("b")] == 0 {
			return errors.New("not reported")
		}
		return nil
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", addr, err)
	}
	b2, err := New(Config{ID: "b", Listener: ln, Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	rb2 := newRecorder()
	b2.SetPeer(raftid.Of("a"), a.Addr().String())
	b2.Start(rb2)
	eventually(t, 10*time.Second, "delivery after reconnect", func() error {
		a.Send(msg("a", "b", 3))
		if rb2.count() == 0 {
			return errors.New("nothing yet")
		}
		return nil
	})
}

// TestTCPTransportSlowPeer: a peer that accepts but never reads cannot
// block Send; the queue fills and further messages are dropped.
func TestTCPTransportSlowPeer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // accepted, never read
		}
	}()
	tr, err := New(Config{ID: "a", Addr: "127.0.0.1:0", Insecure: true, QueueLen: 16, WriteTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	tr.Start(newRecorder())
	tr.SetPeer(raftid.Of("slow"), ln.Addr().String())
	big := bytes.Repeat([]byte("x"), 64<<10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 2000 { // 128 MB: far beyond the socket buffers
			m := msg("a", "slow", uint64(i))
			m.Entries = []*pb.Entry{{Data: big}}
			tr.Send(m)
		}
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Send blocked on a peer that does not read")
	}
	// Other peers are served meanwhile.
	b, rb := newTCP(t, "b", nil)
	tr.SetPeer(raftid.Of("b"), b.Addr().String())
	b.SetPeer(raftid.Of("a"), "127.0.0.1:1")
	tr.Send(msg("a", "b", 1))
	waitCount(t, rb, 1)
}

// TestTCPTransportRejectsMisrouted: a connection whose hello names
// another member, or whose messages claim another sender, is closed.
func TestTCPTransportRejectsMisrouted(t *testing.T) {
	b, rb := newTCP(t, "b", nil)
	b.SetPeer(raftid.Of("a"), "127.0.0.1:1")
	for _, tc := range []struct {
		name  string
		hello []byte
		m     *pb.Message
	}{
		{"wrong recipient", encodeHello(raftid.Of("a"), raftid.Of("c")), msg("a", "b", 1)},
		{"forged sender", encodeHello(raftid.Of("a"), raftid.Of("b")), msg("x", "b", 1)},
		{"unknown member", encodeHello(raftid.Of("x"), raftid.Of("b")), msg("x", "b", 1)},
		{"not a hello", []byte("GET / HTTP/1.1\r\n\r\n"), msg("a", "b", 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", b.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			data, _ := proto.Marshal(tc.m)
			c.Write(appendFrame(appendFrame(nil, tc.hello), data))
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Read(make([]byte, 1)); err == nil {
				t.Fatal("connection stayed open")
			}
			if n := rb.count(); n != 0 {
				t.Fatalf("%d messages delivered", n)
			}
		})
	}
}

// TestTCPTransportHugeFrame: a length field of 4 GiB is refused without
// reading or allocating it.
func TestTCPTransportHugeFrame(t *testing.T) {
	var hdr [8]byte
	binary.BigEndian.PutUint32(hdr[:], 0xffffffff)
	_, _, err := readFrame(bytes.NewReader(hdr[:]), nil, DefaultMaxFrameBytes)
	if !errors.Is(err, ErrFrame) {
		t.Fatalf("readFrame of a 4 GiB length: %v, want ErrFrame", err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 10 {
		readFrame(bytes.NewReader(hdr[:]), nil, DefaultMaxFrameBytes)
	}
	runtime.ReadMemStats(&after)
	if d := after.TotalAlloc - before.TotalAlloc; d > 1<<20 {
		t.Fatalf("%d bytes allocated for 10 refused frames", d)
	}
}
