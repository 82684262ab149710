package tcp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/hakit/hakit/lease/raftlease/internal/raftid"
)

// The attacks of issue 12 on memory and sockets. The transports run
// Insecure here: the bounds hold for authenticated peers too, and a
// forged hello is the cheapest way in.

// hello dials addr as member from and says hello to member to.
func hello(t *testing.T, addr, from, to string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write(appendFrame(nil, encodeHello(raftid.Of(from), raftid.Of(to)))); err != nil {
		t.Fatal(err)
	}
	return c
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// TestFrameHeaderAloneHeapBounded: a frame header declaring the largest
// frame, and nothing after it, on a connection of each of six members,
// reserves read chunks, not six maximum frames (before the fix: 384 MiB).
func TestFrameHeaderAloneHeapBounded(t *testing.T) {
	b, _ := newTCP(t, "b", nil)
	for i := range 6 {
		b.SetPeer(raftid.Of(fmt.Sprint("a", i)), "127.0.0.1:1")
	}
	before := heapInUse()
	var hdr [9]byte
	binary.BigEndian.PutUint32(hdr[:], DefaultMaxFrameBytes)
	for i := range 6 {
		c := hello(t, b.Addr().String(), fmt.Sprint("a", i), "b")
		if _, err := c.Write(hdr[:]); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 5*time.Second, "six connections to be read", func() error {
		if n := b.Stats().ActiveInbound; n != 6 {
			return fmt.Errorf("%d active", n)
		}
		return nil
	})
	time.Sleep(100 * time.Millisecond) // let the readers block in the payload
	grew := int64(heapInUse()) - int64(before)
	t.Logf("six headers declaring %d MiB each: heap in use grew by %d KiB", DefaultMaxFrameBytes>>20, grew>>10)
	if grew > 4<<20 {
		t.Fatalf("six 9-byte frames grew the heap by %d MiB", grew>>20)
	}
}

// TestIdleConnectionsClosed: connections that go quiet, before or after
// their hello, are closed; of 300 that say hello as the same member only
// the newest is kept, and it is closed after IdleTimeout.
func TestIdleConnectionsClosed(t *testing.T) {
	b, _ := newTCPWith(t, Config{ID: "b", IdleTimeout: 300 * time.Millisecond, HandshakeTimeout: 300 * time.Millisecond, MaxPending: 1000})
	b.SetPeer(raftid.Of("a"), "127.0.0.1:1")
	g0 := runtime.NumGoroutine()
	var conns []net.Conn
	for range 300 {
		conns = append(conns, hello(t, b.Addr().String(), "a", "b"))
	}
	for range 50 { // no hello at all
		c, err := net.Dial("tcp", b.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	for i, c := range conns {
		if !closedByPeer(c, 10*time.Second) {
			t.Fatalf("connection %d still open after 10 s", i)
		}
	}
	eventually(t, 5*time.Second, "the serving goroutines to end", func() error {
		if s := b.Stats(); s.ActiveInbound+s.PendingInbound != 0 {
			return fmt.Errorf("%+v", s)
		}
		if n := runtime.NumGoroutine(); n > g0+5 {
			return fmt.Errorf("%d goroutines, %d before", n, g0)
		}
		return nil
	})
	s := b.Stats()
	t.Logf("stats: %+v", s)
	if s.Replaced < 299 || s.Idle < 1 || s.Refused < 50 {
		t.Fatalf("stats %+v: want 299 replaced, at least 1 idle, 50 refused", s)
	}
}

// TestPendingBounded: connections that never finish their hello are
// bounded by MaxPending; the rest are closed at once.
func TestPendingBounded(t *testing.T) {
	b, _ := newTCPWith(t, Config{ID: "b", MaxPending: 8, HandshakeTimeout: time.Minute})
	for range 50 {
		c, err := net.Dial("tcp", b.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	eventually(t, 5*time.Second, "42 connections refused", func() error {
		if s := b.Stats(); s.Refused < 42 || s.PendingInbound > 8 {
			return fmt.Errorf("%+v", s)
		}
		return nil
	})
}

// TestOneInboundPerPeer: a member that connects again replaces its older
// connection, which is closed.
func TestOneInboundPerPeer(t *testing.T) {
	b, rb := newTCP(t, "b", nil)
	b.SetPeer(raftid.Of("a"), "127.0.0.1:1")
	first := hello(t, b.Addr().String(), "a", "b")
	writeMsg(t, first, msg("a", "b", 1))
	waitCount(t, rb, 1)
	second := hello(t, b.Addr().String(), "a", "b")
	writeMsg(t, second, msg("a", "b", 2))
	waitCount(t, rb, 2)
	if !closedByPeer(first, 5*time.Second) {
		t.Fatal("the older connection stayed open")
	}
	if closedByPeer(second, 100*time.Millisecond) {
		t.Fatal("the newer connection was closed")
	}
}

func writeMsg(t *testing.T, c net.Conn, m *pb.Message) {
	t.Helper()
	data, _ := proto.Marshal(m)
	if _, err := c.Write(appendFrame(nil, data)); err != nil {
		t.Fatal(err)
	}
}

// TestSlowFrameClosed: a frame whose payload does not arrive within
// FrameTimeout of its header closes the connection.
func TestSlowFrameClosed(t *testing.T) {
	b, _ := newTCPWith(t, Config{ID: "b", FrameTimeout: 200 * time.Millisecond})
	b.SetPeer(raftid.Of("a"), "127.0.0.1:1")
	c := hello(t, b.Addr().String(), "a", "b")
	var hdr [18]byte
	binary.BigEndian.PutUint32(hdr[:], 1000)
	if _, err := c.Write(hdr[:]); err != nil {
		t.Fatal(err)
	}
	if !closedByPeer(c, 5*time.Second) {
		t.Fatal("a frame stalled after 10 of its 1000 bytes kept the connection open")
	}
	eventually(t, 5*time.Second, "the bad frame to be counted", func() error {
		if b.Stats().BadFrames == 0 {
			return errors.New("not counted")
		}
		return nil
	})
}

// TestOversizeDropped: a message larger than MaxFrameBytes is not sent
// (the peer would close the connection over it); the next one is.
func TestOversizeDropped(t *testing.T) {
	a, _ := newTCPWith(t, Config{ID: "a", MaxFrameBytes: 1024})
	b, rb := newTCP(t, "b", nil)
	a.SetPeer(raftid.Of("b"), b.Addr().String())
	b.SetPeer(raftid.Of("a"), a.Addr().String())
	big := msg("a", "b", 1)
	big.Entries = []*pb.Entry{{Data: bytes.Repeat([]byte("x"), 4096)}}
	a.Send(big)
	a.Send(msg("a", "b", 2))
	waitCount(t, rb, 1)
	rb.mu.Lock()
	got := rb.msgs[0].GetIndex()
	rb.mu.Unlock()
	if got != 2 || a.Stats().Oversize != 1 {
		t.Fatalf("delivered index %d, oversize %d; want the small message only", got, a.Stats().Oversize)
	}
}

// TestAcceptRecoversAfterEMFILE: with every file descriptor taken,
// Accept fails (EMFILE); once descriptors are free again the member
// accepts again. Before the fix the accept loop returned on the first
// error and the member never accepted a connection again. The member runs
// in a child process, whose descriptor limit is lowered; the parent
// dials.
func TestAcceptRecoversAfterEMFILE(t *testing.T) {
	if os.Getenv("RAFTLEASE_TCP_CHILD") != "" {
		emfileChild(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v")
	cmd.Env = append(os.Environ(), "RAFTLEASE_TCP_CHILD=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.ExtraFiles = []*os.File{pw}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	line, err := readLine(pr)
	if err != nil {
		cmd.Wait()
		t.Fatalf("child did not report its address: %v\n%s", err, out.String())
	}
	addr := strings.TrimSpace(line)
	// Connections while the child has no descriptor left: the kernel
	// completes them, Accept fails with EMFILE.
	for range 3 {
		if c, err := net.Dial("tcp", addr); err == nil {
			defer c.Close()
		}
	}
	if line, err = readLine(pr); err != nil || !strings.Contains(line, "accept-failed") {
		cmd.Wait()
		t.Fatalf("child did not see Accept fail (%q, %v):\n%s", line, err, out.String())
	}
	fmt.Fprintln(stdin, "free")
	c := hello(t, addr, "a", "b")
	writeMsg(t, c, msg("a", "b", 1))
	stdin.Close()
	if err := cmd.Wait(); err != nil || !strings.Contains(out.String(), "DELIVERED") {
		t.Fatalf("after descriptor exhaustion the member did not accept again (%v):\n%s", err, out.String())
	}
}

func readLine(r io.Reader) (string, error) {
	var b []byte
	one := make([]byte, 1)
	for {
		if _, err := r.Read(one); err != nil {
			return string(b), err
		}
		if one[0] == '\n' {
			return string(b), nil
		}
		b = append(b, one[0])
	}
}

// emfileChild is the member side of TestAcceptRecoversAfterEMFILE.
func emfileChild(t *testing.T) {
	b, rb := newTCP(t, "b", nil)
	b.SetPeer(raftid.Of("a"), "127.0.0.1:1")
	notify := os.NewFile(3, "notify")
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	lim.Cur = 128
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	var files []*os.File
	for {
		f, err := os.Open(os.DevNull)
		if err != nil {
			break
		}
		files = append(files, f)
	}
	fmt.Fprintln(notify, b.Addr().String())
	eventually(t, 10*time.Second, "Accept to fail", func() error {
		if b.Stats().AcceptErrors == 0 {
			return errors.New("no accept error yet")
		}
		return nil
	})
	fmt.Fprintln(notify, "accept-failed")
	if _, err := readLine(os.Stdin); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		f.Close()
	}
	eventually(t, 10*time.Second, "a message after the descriptors were freed", func() error {
		if rb.count() == 0 {
			return errors.New("nothing delivered")
		}
		return nil
	})
	fmt.Println("DELIVERED")
}
