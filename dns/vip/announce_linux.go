//go:build linux

package vip

import (
	"context"
	"fmt"
	"net"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// announce sends Config.Announcements announcements of the VIP on the
// interface with index ifindex, Interval apart, within ctx.
func (s *Switcher) announce(ctx context.Context, ifindex int, hw net.HardwareAddr) error {
	var send func() error
	if s.prefix.Addr().Is4() {
		frame, err := gratuitousARP(hw, s.prefix.Addr())
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0) // send only: protocol 0 receives nothing
		if err != nil {
			return fmt.Errorf("vip: open packet socket for ARP: %w", err)
		}
		// Closing a packet socket waits for an RCU grace period in the
		// kernel (milliseconds); the promote need not wait for it.
		defer func() { go unix.Close(fd) }()
		to := &unix.SockaddrLinklayer{Protocol: htons(etherTypeARP), Ifindex: ifindex, Halen: 6}
		copy(to.Addr[:], broadcastMAC)
		send = func() error {
			if err := unix.Sendto(fd, frame, 0, to); err != nil {
				return fmt.Errorf("vip: send gratuitous ARP for %s on %s: %w", s.prefix.Addr(), s.cfg.Interface, err)
			}
			return nil
		}
	} else {
		body, err := unsolicitedNABody(hw, s.prefix.Addr())
		if err != nil {
			return err
		}
		msg, err := (&icmp.Message{Type: ipv6.ICMPTypeNeighborAdvertisement, Body: &icmp.RawBody{Data: body}}).Marshal(nil)
		if err != nil {
			return err
		}
		c, err := icmp.ListenPacket("ip6:ipv6-icmp", "::")
		if err != nil {
			return fmt.Errorf("vip: open ICMPv6 socket: %w", err)
		}
		defer c.Close()
		pc := c.IPv6PacketConn()
		// RFC 4861 section 7.1.2: a receiver drops neighbour discovery
		// messages whose hop limit is not 255. The kernel fills in the
		// ICMPv6 checksum.
		if err := pc.SetMulticastHopLimit(255); err != nil {
			return fmt.Errorf("vip: set hop limit: %w", err)
		}
		cm := &ipv6.ControlMessage{HopLimit: 255, Src: s.prefix.Addr().AsSlice(), IfIndex: ifindex}
		dst := &net.IPAddr{IP: net.IPv6linklocalallnodes, Zone: s.cfg.Interface}
		send = func() error {
			if _, err := pc.WriteTo(msg, cm, dst); err != nil {
				return fmt.Errorf("vip: send neighbour advertisement for %s on %s: %w", s.prefix.Addr(), s.cfg.Interface, err)
			}
			return nil
		}
	}
	for i := 0; i < s.cfg.Announcements; i++ {
		if i > 0 {
			timer := time.NewTimer(s.cfg.Interval)
			select {
			case <-timer.C:
			case <-ctx.Done():
				timer.Stop()
				return fmt.Errorf("vip: announce %s: stopped after %d of %d: %w", s.prefix.Addr(), i, s.cfg.Announcements, ctx.Err())
			}
		}
		if err := send(); err != nil {
			return err
		}
	}
	return nil
}

// htons converts a 16-bit value to network byte order for sockaddr_ll.
func htons(v uint16) uint16 { return v<<8 | v>>8 }
