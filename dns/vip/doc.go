// Package vip is a dns.Switcher that moves a floating IP address (a VIP)
// to the active member: Promote adds the address to a network interface
// and announces it on the link, Demote removes it. It works on Linux only
// (netlink and packet sockets); on other systems the package is empty.
//
// Announcements make neighbours drop their cached link-layer address for
// the VIP at once instead of after their cache times out: for IPv4 a
// gratuitous ARP (an ARP request whose sender and target address are both
// the VIP, RFC 5227 section 2.3 "ARP Announcement"), for IPv6 an
// unsolicited neighbour advertisement to all nodes (RFC 4861 section
// 7.2.6: solicited flag clear, override flag set, with the target
// link-layer address option), each sent Config.Announcements times.
//
// A floating address has no place to keep a fencing token, so the
// switcher refuses stale tokens only within its own process (a
// fence.Guard); across members, exclusive ownership of the VIP must come
// from the election, and the address is only as fenced as the term that
// holds it. Use it together with a fenced switcher (RFC 2136, Route 53)
// or behind a load balancer health check when that matters.
package vip

import "github.com/hakit/hakit/dns"

// ErrConfig is wrapped by every error New returns for a Config it
// refuses; each message reads "vip: invalid config: Field: rule". It also
// matches dns.ErrConfig. (It is declared on every system, so that code
// testing for it builds everywhere.)
var ErrConfig error = configError{}

type configError struct{}

func (configError) Error() string        { return "vip: invalid config" }
func (configError) Is(target error) bool { return target == dns.ErrConfig }
