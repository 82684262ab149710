package vip

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"testing"
)

var testMAC = net.HardwareAddr{0x02, 0x00, 0x5e, 0x10, 0x20, 0x30}

func TestGratuitousARP(t *testing.T) {
	ip := netip.MustParseAddr("192.0.2.100")
	b, err := gratuitousARP(testMAC, ip)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x5e, 0x10, 0x20, 0x30, 0x08, 0x06, // Ethernet
		0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01, // Ethernet/IPv4, request
		0x02, 0x00, 0x5e, 0x10, 0x20, 0x30, 192, 0, 2, 100, // sender
		0, 0, 0, 0, 0, 0, 192, 0, 2, 100, // target
	}
	if !bytes.Equal(b, want) {
		t.Fatalf("frame\n got % x\nwant % x", b, want)
	}
	f, err := parseARP(append(b, make([]byte, 18)...)) // with Ethernet padding
	if err != nil {
		t.Fatal(err)
	}
	if f.Op != arpRequest || f.SenderIP != ip || f.TargetIP != ip || !bytes.Equal(f.SenderHW, testMAC) || !bytes.Equal(f.EthDst, broadcastMAC) {
		t.Fatalf("parsed %+v", f)
	}
	if _, err := gratuitousARP(testMAC[:5], ip); err == nil {
		t.Error("short MAC accepted")
	}
	if _, err := gratuitousARP(testMAC, netip.MustParseAddr("2001:db8::1")); err == nil {
		t.Error("IPv6 address accepted")
	}
}

func TestParseARPErrors(t *testing.T) {
	good, _ := gratuitousARP(testMAC, netip.MustParseAddr("192.0.2.1"))
	mutate := func(i int, v byte) []byte { b := bytes.Clone(good); b[i] = v; return b }
	tests := []struct {
		name    string
		b       []byte
		notARP  bool
		wantErr bool
	}{
		{"empty", nil, false, true},
		{"short header", good[:10], false, true},
		{"IPv6 frame", mutate(13, 0xdd), true, true},
		{"truncated", good[:30], false, true},
		{"not Ethernet hardware", mutate(15, 6), true, true},
		{"op 3", mutate(21, 3), false, true},
		{"reply", mutate(21, 2), false, false},
	}
	for _, tt := range tests {
		_, err := parseARP(tt.b)
		if (err != nil) != tt.wantErr || errors.Is(err, errNotARP) != tt.notARP {
			t.Errorf("%s: err = %v", tt.name, err)
		}
	}
}

func FuzzParseARP(f *testing.F) {
	good, _ := gratuitousARP(testMAC, netip.MustParseAddr("192.0.2.1"))
	f.Add(good)
	f.Add(append(bytes.Clone(good), 0, 0, 0))
	f.Add(good[:20])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parseARP(b)
		if err != nil {
			return
		}
		// A decoded frame encodes back to the bytes it came from.
		if got := p.marshal(); !bytes.Equal(got, b[:arpFrameLen]) {
			t.Fatalf("re-encoded % x, want % x", got, b[:arpFrameLen])
		}
	})
}

func TestNABody(t *testing.T) {
	target := netip.MustParseAddr("2001:db8::100")
	b, err := unsolicitedNABody(testMAC, target)
	if err != nil {
		t.Fatal(err)
	}
	na, err := parseNABody(b)
	if err != nil {
		t.Fatal(err)
	}
	if na.Solicited || !na.Override || na.Router || na.Target != target || !bytes.Equal(na.TargetHW, testMAC) {
		t.Fatalf("parsed %+v", na)
	}
	for _, bad := range []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("::ffff:192.0.2.1")} {
		if _, err := unsolicitedNABody(testMAC, bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

func FuzzParseNABody(f *testing.F) {
	good, _ := unsolicitedNABody(testMAC, netip.MustParseAddr("2001:db8::1"))
	f.Add(good)
	f.Add(good[:20])
	f.Add(append(bytes.Clone(good[:20]), 2, 0))
	f.Add(append(bytes.Clone(good[:20]), 1, 3, 0, 0))
	f.Fuzz(func(t *testing.T, b []byte) {
		na, err := parseNABody(b)
		if err != nil {
			return
		}
		if !na.Target.Is6() || (na.TargetHW != nil && len(na.TargetHW) != 6) {
			t.Fatalf("parsed %+v from % x", na, b)
		}
	})
}
