//go:build linux

package vip

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/hakit/hakit/dns"
	"github.com/hakit/hakit/dns/switchertest"
	"github.com/hakit/hakit/fence"
)

func (tn *testNet) switcher(t *testing.T, addr string) *Switcher {
	t.Helper()
	s, err := New(Config{Interface: tn.ActiveIf, Address: addr, Announcements: 3, Interval: 10 * time.Millisecond, NetNSPath: tn.ActivePath})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestIPv4(t *testing.T) {
	tn := newTestNet(t)
	vip := netip.MustParseAddr("192.0.2.100")
	capt := tn.capture(t, etherTypeARP)
	s := tn.switcher(t, "192.0.2.100/24")
	ctx := t.Context()
	if err := s.Promote(ctx, 1); err != nil {
		t.Fatal(err)
	}
	frames := capt.collect(t, 3, func(b []byte) bool {
		f, err := parseARP(b)
		return err == nil && f.SenderIP == vip
	})
	for _, b := range frames {
		f, _ := parseARP(b)
		switch {
		case !bytes.Equal(f.EthDst, broadcastMAC):
			t.Errorf("Ethernet destination %v, want broadcast", f.EthDst)
		case !bytes.Equal(f.EthSrc, tn.ActiveMAC) || !bytes.Equal(f.SenderHW, tn.ActiveMAC):
			t.Errorf("source %v / sender %v, want the active side's %v", f.EthSrc, f.SenderHW, tn.ActiveMAC)
		case f.Op != arpRequest:
			t.Errorf("operation %d, want request", f.Op)
		case f.TargetIP != vip || !bytes.Equal(f.TargetHW, make(net.HardwareAddr, 6)):
			t.Errorf("target %v %v, want the VIP and a zero address", f.TargetIP, f.TargetHW)
		}
	}
	addr := tn.echoOn(t, "192.0.2.100:0")
	if err := tn.dialFromPeer(addr, 5*time.Second); err != nil {
		t.Fatalf("peer cannot reach the VIP: %v", err)
	}
	// Promote again: idempotent, and announces again.
	if err := s.Promote(ctx, 1); err != nil {
		t.Fatal(err)
	}
	capt.collect(t, 3, func(b []byte) bool { f, err := parseARP(b); return err == nil && f.SenderIP == vip })
	if err := s.Demote(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if held, err := s.Holds(ctx); err != nil || held {
		t.Fatalf("Holds after demote = %v, %v", held, err)
	}
	if err := tn.dialFromPeer(addr, 300*time.Millisecond); err == nil {
		t.Fatal("peer still reaches the VIP after demote")
	}
}

func TestIPv6(t *testing.T) {
	tn := newTestNet(t)
	vip := netip.MustParseAddr("2001:db8::100")
	capt := tn.capture(t, etherTypeIPv6)
	s := tn.switcher(t, "2001:db8::100/64")
	if err := s.Promote(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	frames := capt.collect(t, 3, func(b []byte) bool {
		p, err := parseIPv6NA(b)
		return err == nil && p.NA.Target == vip && p.Src == vip
	})
	allNodes := netip.MustParseAddr("ff02::1")
	for _, b := range frames {
		p, _ := parseIPv6NA(b)
		switch {
		case p.HopLimit != 255:
			t.Errorf("hop limit %d, want 255", p.HopLimit)
		case p.Dst != allNodes:
			t.Errorf("destination %v, want ff02::1", p.Dst)
		case p.NA.Solicited || !p.NA.Override || p.NA.Router:
			t.Errorf("flags %+v, want override only", p.NA)
		case !bytes.Equal(p.NA.TargetHW, tn.ActiveMAC) || !bytes.Equal(p.EthSrc, tn.ActiveMAC):
			t.Errorf("target link-layer %v / source %v, want %v", p.NA.TargetHW, p.EthSrc, tn.ActiveMAC)
		case !bytes.Equal(p.EthDst, net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}):
			t.Errorf("Ethernet destination %v, want 33:33:00:00:00:01", p.EthDst)
		}
	}
	addr := tn.echoOn(t, "[2001:db8::100]:0")
	if err := tn.dialFromPeer(addr, 5*time.Second); err != nil {
		t.Fatalf("peer cannot reach the VIP: %v", err)
	}
	if err := s.Demote(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	if held, err := s.Holds(t.Context()); err != nil || held {
		t.Fatalf("Holds after demote = %v, %v", held, err)
	}
}

func TestErrors(t *testing.T) {
	tn := newTestNet(t)
	s, err := New(Config{Interface: "nosuchif0", Address: "192.0.2.100/24", NetNSPath: tn.ActivePath})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Promote(t.Context(), 1); !errors.Is(err, ErrInterface) || !strings.Contains(err.Error(), "nosuchif0") {
		t.Fatalf("err = %v, want ErrInterface naming the interface", err)
	}
	s = tn.switcher(t, "192.0.2.100/24")
	if err := s.Promote(t.Context(), 5); err != nil {
		t.Fatal(err)
	}
	if err := s.Demote(t.Context(), 4); !errors.Is(err, fence.ErrStale) {
		t.Fatalf("stale demote: err = %v", err)
	}
	if held, _ := s.Holds(t.Context()); !held {
		t.Fatal("a stale demote removed the VIP")
	}
	if err := s.Promote(t.Context(), 0); !errors.Is(err, fence.ErrNoToken) {
		t.Fatalf("zero token: err = %v", err)
	}
	// Cancelling during the announcements stops them.
	slow, err := New(Config{Interface: tn.ActiveIf, Address: "192.0.2.101/24", Announcements: 1000, Interval: time.Hour, NetNSPath: tn.ActivePath})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if err := slow.Promote(ctx, 6); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "1 of 1000") {
		t.Fatalf("err = %v, want a deadline after the first announcement", err)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		cfg  Config
		want string
	}{
		{Config{Address: "192.0.2.1/24"}, "Interface"},
		{Config{Interface: "eth0", Address: "192.0.2.1"}, "Address"},
		{Config{Interface: "eth0", Address: "fe80::1%eth0/64"}, "Address"},
		{Config{Interface: "eth0", Address: "224.0.0.1/4"}, "unicast"},
		{Config{Interface: "eth0", Address: "192.0.2.1/24", Announcements: -1}, "Announcements"},
		{Config{Interface: "eth0", Address: "192.0.2.1/24", Interval: -1}, "Interval"},
	}
	for _, tt := range tests {
		_, err := New(tt.cfg)
		if !errors.Is(err, ErrConfig) || !errors.Is(err, dns.ErrConfig) || !strings.Contains(err.Error(), tt.want) ||
			!strings.HasPrefix(err.Error(), "vip: invalid config: ") {
			t.Errorf("New(%+v) = %v, want an ErrConfig (and dns.ErrConfig) naming %s", tt.cfg, err, tt.want)
		}
	}
	_, err := New(Config{Address: "nonsense", Interval: -1})
	for _, field := range []string{"Interface", "Address", "Interval"} {
		if err == nil || !strings.Contains(err.Error(), "vip: invalid config: "+field+": ") {
			t.Errorf("New with three broken fields: %v; want it to name %s", err, field)
		}
	}
}

func TestConformance(t *testing.T) {
	for _, addr := range []string{"192.0.2.100/24", "2001:db8::100/64"} {
		t.Run(addr, func(t *testing.T) {
			switchertest.Run(t, switchertest.Harness{
				New: func(t *testing.T) switchertest.Backend {
					tn := newTestNet(t)
					s := tn.switcher(t, addr)
					return switchertest.Backend{
						Switcher: func(*testing.T, string) dns.Switcher { return s },
						Observe: func(ctx context.Context) (bool, fence.Token, error) {
							held, err := s.Holds(ctx)
							return held, 0, err
						},
						Break: func(t *testing.T) func() {
							// Rename the interface away: promotes fail until
							// it is back.
							rename := func(from, to string) {
								err := inNS(tn.ActivePath, func() error {
									l, err := netlink.LinkByName(from)
									if err != nil {
										return err
									}
									if err := netlink.LinkSetDown(l); err != nil {
										return err
									}
									if err := netlink.LinkSetName(l, to); err != nil {
										return err
									}
									return netlink.LinkSetUp(l)
								})
								if err != nil {
									t.Fatal(err)
								}
							}
							rename(tn.ActiveIf, tn.ActiveIf+"x")
							return func() { rename(tn.ActiveIf+"x", tn.ActiveIf) }
						},
					}
				},
			})
		})
	}
}

// A call waiting for another call of the same Switcher to finish stops
// waiting when its own context ends: here a Promote sits between two
// announcements a minute apart, and a Demote with a short deadline must
// not wait for it.
func TestQueuedCallHonoursContext(t *testing.T) {
	tn := newTestNet(t)
	vip := netip.MustParseAddr("192.0.2.101")
	capt := tn.capture(t, etherTypeARP)
	s, err := New(Config{Interface: tn.ActiveIf, Address: "192.0.2.101/24", Announcements: 2, Interval: time.Minute, NetNSPath: tn.ActivePath})
	if err != nil {
		t.Fatal(err)
	}
	pctx, pcancel := context.WithCancel(t.Context())
	promoted := make(chan error, 1)
	go func() { promoted <- s.Promote(pctx, 1) }()
	defer func() {
		pcancel()
		<-promoted
	}()
	// The first announcement is out: Promote now waits for the second.
	capt.collect(t, 1, func(b []byte) bool {
		f, err := parseARP(b)
		return err == nil && f.SenderIP == vip
	})
	dctx, dcancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer dcancel()
	demoted := make(chan error, 1)
	go func() { demoted <- s.Demote(dctx, 1) }()
	select {
	case err := <-demoted:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Demote behind a Promote between announcements = %v, want context.DeadlineExceeded", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Demote still waiting for the Promote 10s after its context ended")
	}
}
