//go:build linux

package vip

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// testNet is two network namespaces joined by a veth pair: the active
// side, where the switcher runs, and the peer side, which watches the
// link and connects to the VIP.
type testNet struct {
	ActivePath, PeerPath string
	ActiveIf, PeerIf     string
	ActiveMAC            net.HardwareAddr
}

var netSeq atomic.Int64

const namespaceRoot = "/var/run/netns"

// requireRoot skips a test that needs root, or fails it under CI=true.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	msg := "needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) to create network namespaces and a veth pair; run the tests as root"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// inNS runs fn on a fresh thread that joined the namespace at path. The
// thread is discarded afterwards.
func inNS(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		ns, err := netns.GetFromPath(path)
		if err != nil {
			errc <- err
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// newNamedNS creates a named network namespace and registers its removal.
func newNamedNS(t testing.TB, name string) string {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: NewNamed moves the thread
		ns, err := netns.NewNamed(name)
		if err == nil {
			ns.Close()
		}
		errc <- err
	}()
	if err := <-errc; err != nil {
		msg := fmt.Sprintf("cannot create network namespace %s (%v): the tests need root with CAP_SYS_ADMIN", name, err)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Cleanup(func() {
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("remove network namespace %s: %v", name, err)
		}
	})
	return filepath.Join(namespaceRoot, name)
}

// newTestNet builds the two namespaces and the veth pair, with
// 192.0.2.1/24 and 2001:db8::1/64 on the active side and .2 and ::2 on the
// peer side, and removes everything at cleanup.
func newTestNet(t testing.TB) *testNet {
	t.Helper()
	requireRoot(t)
	n := netSeq.Add(1)
	tn := &testNet{
		ActiveIf: fmt.Sprintf("hkva%d", n),
		PeerIf:   fmt.Sprintf("hkvp%d", n),
	}
	tn.ActivePath = newNamedNS(t, fmt.Sprintf("hakit-vip-%d-%d-a", os.Getpid(), n))
	tn.PeerPath = newNamedNS(t, fmt.Sprintf("hakit-vip-%d-%d-p", os.Getpid(), n))
	peerNS, err := netns.GetFromPath(tn.PeerPath)
	if err != nil {
		t.Fatal(err)
	}
	defer peerNS.Close()

	// Namespace removal destroys the pair too; deleting it first makes
	// the cleanup explicit and independent of lingering references.
	t.Cleanup(func() {
		_ = inNS(tn.ActivePath, func() error {
			if l, err := netlink.LinkByName(tn.ActiveIf); err == nil {
				return netlink.LinkDel(l)
			}
			return nil
		})
	})
	err = inNS(tn.ActivePath, func() error {
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: tn.ActiveIf}, PeerName: tn.PeerIf}); err != nil {
			return fmt.Errorf("add veth pair: %w", err)
		}
		peer, err := netlink.LinkByName(tn.PeerIf)
		if err != nil {
			return err
		}
		if err := netlink.LinkSetNsFd(peer, int(peerNS)); err != nil {
			return fmt.Errorf("move %s: %w", tn.PeerIf, err)
		}
		l, err := setUp(tn.ActiveIf, "192.0.2.1/24", "2001:db8::1/64")
		if err != nil {
			return err
		}
		tn.ActiveMAC = l.Attrs().HardwareAddr
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = inNS(tn.PeerPath, func() error {
		_, err := setUp(tn.PeerIf, "192.0.2.2/24", "2001:db8::2/64")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return tn
}

// setUp brings lo and the named link up and gives the link addresses;
// IPv6 ones without duplicate address detection, so they work at once.
func setUp(name string, addrs ...string) (netlink.Link, error) {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return nil, err
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return nil, err
	}
	l, err := netlink.LinkByName(name)
	if err != nil {
		return nil, err
	}
	for _, a := range addrs {
		na, err := netlink.ParseAddr(a)
		if err != nil {
			return nil, err
		}
		if na.IP.To4() == nil {
			na.Flags = unix.IFA_F_NODAD
		}
		if err := netlink.AddrAdd(l, na); err != nil {
			return nil, fmt.Errorf("add %s to %s: %w", a, name, err)
		}
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return nil, err
	}
	return netlink.LinkByName(name)
}

// capture is a packet socket in the peer namespace receiving frames of
// one ethertype on the peer interface.
type capture struct{ fd int }

func (tn *testNet) capture(t *testing.T, ethertype uint16) *capture {
	t.Helper()
	c := &capture{fd: -1}
	err := inNS(tn.PeerPath, func() error {
		ifi, err := net.InterfaceByName(tn.PeerIf)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(ethertype)))
		if err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(ethertype), Ifindex: ifi.Index}); err != nil {
			unix.Close(fd)
			return err
		}
		tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			unix.Close(fd)
			return err
		}
		c.fd = fd
		return nil
	})
	if err != nil {
		t.Fatalf("open capture on %s: %v", tn.PeerIf, err)
	}
	t.Cleanup(func() { unix.Close(c.fd) })
	return c
}

// collect reads frames until match has accepted n of them or the
// deadline passes.
func (c *capture) collect(t *testing.T, n int, match func([]byte) bool) [][]byte {
	t.Helper()
	var got [][]byte
	buf := make([]byte, 65536)
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < n {
		if time.Now().After(deadline) {
			t.Fatalf("captured %d matching frames within 10s, want %d", len(got), n)
		}
		m, _, err := unix.Recvfrom(c.fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if frame := bytes.Clone(buf[:m]); match(frame) {
			got = append(got, frame)
		}
	}
	return got
}

// echoOn listens on addr in the active namespace and echoes one line per
// connection.
func (tn *testNet) echoOn(t *testing.T, addr string) string {
	t.Helper()
	var ln net.Listener
	if err := inNS(tn.ActivePath, func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatalf("listen on %s in the active namespace: %v", addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 64)
				n, _ := c.Read(buf)
				c.Write(buf[:n])
			}()
		}
	}()
	return ln.Addr().String()
}

// dialFromPeer connects to addr from the peer namespace and checks the echo.
func (tn *testNet) dialFromPeer(addr string, timeout time.Duration) error {
	var c net.Conn
	if err := inNS(tn.PeerPath, func() (err error) {
		c, err = net.DialTimeout("tcp", addr, timeout)
		return err
	}); err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("ping")); err != nil {
		return err
	}
	buf := make([]byte, 4)
	if _, err := c.Read(buf); err != nil {
		return err
	}
	if string(buf) != "ping" {
		return fmt.Errorf("echo = %q", buf)
	}
	return nil
}

// ipv6NA is a neighbour advertisement as captured in an Ethernet frame.
type ipv6NA struct {
	EthDst, EthSrc net.HardwareAddr
	HopLimit       uint8
	Src, Dst       netip.Addr
	NA             neighbourAdvert
}

// parseIPv6NA decodes an Ethernet frame carrying an ICMPv6 neighbour
// advertisement with no IPv6 extension headers.
func parseIPv6NA(b []byte) (ipv6NA, error) {
	if len(b) < 14+40+4 {
		return ipv6NA{}, fmt.Errorf("frame of %d bytes is too short", len(b))
	}
	if binary.BigEndian.Uint16(b[12:14]) != etherTypeIPv6 {
		return ipv6NA{}, errors.New("not IPv6")
	}
	ip := b[14:]
	if ip[0]>>4 != 6 || ip[6] != 58 {
		return ipv6NA{}, errors.New("not ICMPv6 without extension headers")
	}
	plen := int(binary.BigEndian.Uint16(ip[4:6]))
	if 40+plen > len(ip) || plen < 4 {
		return ipv6NA{}, fmt.Errorf("payload length %d does not fit %d bytes", plen, len(ip)-40)
	}
	icmp := ip[40 : 40+plen]
	if icmp[0] != 136 || icmp[1] != 0 {
		return ipv6NA{}, fmt.Errorf("ICMPv6 type %d code %d is not a neighbour advertisement", icmp[0], icmp[1])
	}
	na, err := parseNABody(icmp[4:])
	if err != nil {
		return ipv6NA{}, err
	}
	return ipv6NA{
		EthDst:   bytes.Clone(b[0:6]),
		EthSrc:   bytes.Clone(b[6:12]),
		HopLimit: ip[7],
		Src:      netip.AddrFrom16([16]byte(ip[8:24])),
		Dst:      netip.AddrFrom16([16]byte(ip[24:40])),
		NA:       na,
	}, nil
}

func FuzzParseIPv6NA(f *testing.F) {
	body, _ := unsolicitedNABody(testMAC, netip.MustParseAddr("2001:db8::1"))
	frame := append([]byte{0x33, 0x33, 0, 0, 0, 1, 2, 0, 0x5e, 0x10, 0x20, 0x30, 0x86, 0xdd,
		0x60, 0, 0, 0, 0, byte(4 + len(body)), 58, 255}, make([]byte, 32)...)
	frame = append(frame, 136, 0, 0, 0)
	frame = append(frame, body...)
	f.Add(frame)
	f.Add(frame[:60])
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parseIPv6NA(b)
		if err != nil {
			return
		}
		if len(p.EthDst) != 6 || !p.Src.Is6() || !p.NA.Target.Is6() {
			t.Fatalf("parsed %+v", p)
		}
	})
}
