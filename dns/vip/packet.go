package vip

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// Ethernet and ARP constants (RFC 826, IEEE 802.3).
const (
	etherTypeARP  = 0x0806
	etherTypeIPv6 = 0x86dd
	arpHTEthernet = 1
	arpPTIPv4     = 0x0800
	arpRequest    = 1
	arpReply      = 2
	ethHeaderLen  = 14
	arpIPv4Len    = 28
	// ARPFrameLen is the length of an Ethernet frame carrying an IPv4 ARP
	// packet, before padding to the Ethernet minimum.
	arpFrameLen = ethHeaderLen + arpIPv4Len
)

var broadcastMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// arpFrame is an Ethernet frame carrying an IPv4-over-Ethernet ARP packet.
type arpFrame struct {
	EthDst, EthSrc     net.HardwareAddr
	Op                 uint16
	SenderHW, TargetHW net.HardwareAddr
	SenderIP, TargetIP netip.Addr
}

// gratuitousARP returns the frame announcing that ip is at hw: a broadcast
// ARP request with sender and target protocol address both ip and a zero
// target hardware address (RFC 5227 section 2.3).
func gratuitousARP(hw net.HardwareAddr, ip netip.Addr) ([]byte, error) {
	if len(hw) != 6 {
		return nil, fmt.Errorf("vip: gratuitous ARP: hardware address %v is not 6 bytes", hw)
	}
	if !ip.Is4() {
		return nil, fmt.Errorf("vip: gratuitous ARP: %v is not an IPv4 address", ip)
	}
	f := arpFrame{
		EthDst: broadcastMAC, EthSrc: hw, Op: arpRequest,
		SenderHW: hw, SenderIP: ip,
		TargetHW: make(net.HardwareAddr, 6), TargetIP: ip,
	}
	return f.marshal(), nil
}

func (f arpFrame) marshal() []byte {
	b := make([]byte, 0, arpFrameLen)
	b = append(b, f.EthDst...)
	b = append(b, f.EthSrc...)
	b = binary.BigEndian.AppendUint16(b, etherTypeARP)
	b = binary.BigEndian.AppendUint16(b, arpHTEthernet)
	b = binary.BigEndian.AppendUint16(b, arpPTIPv4)
	b = append(b, 6, 4)
	b = binary.BigEndian.AppendUint16(b, f.Op)
	b = append(b, f.SenderHW...)
	s4 := f.SenderIP.As4()
	b = append(b, s4[:]...)
	b = append(b, f.TargetHW...)
	t4 := f.TargetIP.As4()
	b = append(b, t4[:]...)
	return b
}

// errNotARP is returned by parseARP for a well-formed frame of another
// kind, which a capture skips.
var errNotARP = errors.New("vip: not an IPv4-over-Ethernet ARP frame")

// parseARP decodes an Ethernet frame carrying an IPv4 ARP request or
// reply. Trailing bytes (Ethernet padding) are ignored; anything shorter
// or of another kind is an error.
func parseARP(b []byte) (arpFrame, error) {
	if len(b) < ethHeaderLen {
		return arpFrame{}, fmt.Errorf("vip: parse ARP: frame of %d bytes is shorter than an Ethernet header", len(b))
	}
	if et := binary.BigEndian.Uint16(b[12:14]); et != etherTypeARP {
		return arpFrame{}, fmt.Errorf("%w: ethertype %#04x", errNotARP, et)
	}
	if len(b) < arpFrameLen {
		return arpFrame{}, fmt.Errorf("vip: parse ARP: frame of %d bytes, want at least %d", len(b), arpFrameLen)
	}
	p := b[ethHeaderLen:]
	if ht, pt := binary.BigEndian.Uint16(p[0:2]), binary.BigEndian.Uint16(p[2:4]); ht != arpHTEthernet || pt != arpPTIPv4 || p[4] != 6 || p[5] != 4 {
		return arpFrame{}, fmt.Errorf("%w: hardware type %d, protocol %#04x, lengths %d/%d", errNotARP, ht, pt, p[4], p[5])
	}
	op := binary.BigEndian.Uint16(p[6:8])
	if op != arpRequest && op != arpReply {
		return arpFrame{}, fmt.Errorf("vip: parse ARP: operation %d is neither request nor reply", op)
	}
	clone := func(s []byte) net.HardwareAddr { return append(net.HardwareAddr(nil), s...) }
	return arpFrame{
		EthDst:   clone(b[0:6]),
		EthSrc:   clone(b[6:12]),
		Op:       op,
		SenderHW: clone(p[8:14]),
		SenderIP: netip.AddrFrom4([4]byte(p[14:18])),
		TargetHW: clone(p[18:24]),
		TargetIP: netip.AddrFrom4([4]byte(p[24:28])),
	}, nil
}

// Neighbour advertisement constants (RFC 4861 section 4.4).
const (
	naFlagRouter    = 0x80
	naFlagSolicited = 0x40
	naFlagOverride  = 0x20
	optTargetLLAddr = 2
	naBodyLen       = 4 + 16 + 8 // flags and reserved, target, one 8-byte option
)

// unsolicitedNABody returns the body (after type, code and checksum) of
// the neighbour advertisement announcing that target is at hw: solicited
// flag clear, override flag set, target link-layer address option.
func unsolicitedNABody(hw net.HardwareAddr, target netip.Addr) ([]byte, error) {
	if len(hw) != 6 {
		return nil, fmt.Errorf("vip: neighbour advertisement: hardware address %v is not 6 bytes", hw)
	}
	if !target.Is6() || target.Is4In6() {
		return nil, fmt.Errorf("vip: neighbour advertisement: %v is not an IPv6 address", target)
	}
	b := make([]byte, 0, naBodyLen)
	b = append(b, naFlagOverride, 0, 0, 0)
	t := target.As16()
	b = append(b, t[:]...)
	b = append(b, optTargetLLAddr, 1) // option length in units of 8 bytes
	b = append(b, hw...)
	return b, nil
}

// neighbourAdvert is a decoded neighbour advertisement body.
type neighbourAdvert struct {
	Router, Solicited, Override bool
	Target                      netip.Addr
	TargetHW                    net.HardwareAddr // nil without the option
}

// parseNABody decodes a neighbour advertisement body as built by
// unsolicitedNABody or sent by any RFC 4861 node: options are walked by
// their length fields, and a zero-length or overlong option is an error.
func parseNABody(b []byte) (neighbourAdvert, error) {
	if len(b) < 20 {
		return neighbourAdvert{}, fmt.Errorf("vip: parse neighbour advertisement: %d bytes, want at least 20", len(b))
	}
	na := neighbourAdvert{
		Router:    b[0]&naFlagRouter != 0,
		Solicited: b[0]&naFlagSolicited != 0,
		Override:  b[0]&naFlagOverride != 0,
		Target:    netip.AddrFrom16([16]byte(b[4:20])),
	}
	opts := b[20:]
	for len(opts) > 0 {
		if len(opts) < 2 || opts[1] == 0 || int(opts[1])*8 > len(opts) {
			return neighbourAdvert{}, fmt.Errorf("vip: parse neighbour advertisement: bad option at byte %d", len(b)-len(opts))
		}
		n := int(opts[1]) * 8
		if opts[0] == optTargetLLAddr && n >= 8 {
			na.TargetHW = append(net.HardwareAddr(nil), opts[2:8]...)
		}
		opts = opts[n:]
	}
	return na, nil
}
