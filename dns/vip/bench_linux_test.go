//go:build linux

package vip

import (
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/hakit/hakit/fence"
)

// BenchmarkPromoteDemote measures a Promote (one announcement) and a
// Demote of an IPv4 VIP in a network namespace; the baseline adds and
// removes the address with netlink alone, also from a thread in the
// namespace.
func BenchmarkPromoteDemote(b *testing.B) {
	tn := newTestNet(b)
	b.Run("baseline-netlink", func(b *testing.B) {
		addr, err := netlink.ParseAddr("192.0.2.100/24")
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			err := inNS(tn.ActivePath, func() error {
				l, err := netlink.LinkByName(tn.ActiveIf)
				if err != nil {
					return err
				}
				if err := netlink.AddrReplace(l, addr); err != nil {
					return err
				}
				return netlink.AddrDel(l, addr)
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("switcher", func(b *testing.B) {
		s, err := New(Config{Interface: tn.ActiveIf, Address: "192.0.2.100/24", Announcements: 1, NetNSPath: tn.ActivePath})
		if err != nil {
			b.Fatal(err)
		}
		tok := fence.Token(0)
		for b.Loop() {
			tok++
			if err := s.Promote(b.Context(), tok); err != nil {
				b.Fatal(err)
			}
			if err := s.Demote(b.Context(), tok); err != nil {
				b.Fatal(err)
			}
		}
	})
}
