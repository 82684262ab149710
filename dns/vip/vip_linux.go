//go:build linux

package vip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/hakit/hakit/dns"
	"github.com/hakit/hakit/fence"
)

// ErrInterface is wrapped by errors about the configured interface: it
// does not exist (in the namespace used) or has no Ethernet address.
var ErrInterface = errors.New("vip: interface unusable")

// Config says which address to float and where.
type Config struct {
	// Interface is the network interface that carries the VIP, e.g.
	// "eth0". Required. It must have a 6-byte (Ethernet) address.
	Interface string
	// Address is the VIP with its prefix length, e.g. "192.0.2.100/24"
	// or "2001:db8::100/64". Required.
	Address string
	// Announcements is how many gratuitous ARPs or neighbour
	// advertisements Promote sends; 0 means 3.
	Announcements int
	// Interval is the wait between announcements; 0 means 200ms.
	Interval time.Duration
	// NetNSPath, if set, is the network namespace to act in, e.g.
	// "/var/run/netns/blue" or "/proc/1234/ns/net"; every call then runs
	// on a thread that joined it (which needs CAP_SYS_ADMIN). "" means
	// the namespace of the process.
	NetNSPath string
	// Logger receives one record per change; nil means slog.Default().
	Logger *slog.Logger
}

// Switcher adds and removes the VIP. It needs CAP_NET_ADMIN (addresses)
// and CAP_NET_RAW (announcements). It is safe for concurrent use; calls
// run one at a time, and a call waiting for the one before it gives up
// when its own context ends.
//
// Promote adds the address (an existing one is left as is: idempotent),
// then sends the announcements, waiting Interval between them, all within
// ctx. An IPv6 VIP is added without duplicate address detection
// (IFA_F_NODAD), since the election, not DAD, decides who owns it, and it
// must be usable at once. Demote removes the address; removing an absent
// one succeeds. Tokens are checked against the highest this Switcher has
// seen (see the package documentation).
type Switcher struct {
	cfg    Config
	prefix netip.Prefix
	log    *slog.Logger
	sem    chan struct{} // one slot: the right to make a call; waiting for it honours ctx
	guard  fence.Guard
}

var _ dns.Switcher = (*Switcher)(nil)

// New fills in cfg's defaults, validates it and returns a Switcher. An
// invalid cfg is refused with an error wrapping ErrConfig that names every
// broken field. New does not touch the system.
func New(cfg Config) (*Switcher, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	p := netip.MustParsePrefix(cfg.Address)
	return &Switcher{cfg: cfg, prefix: p, log: cfg.Logger.With("interface", cfg.Interface, "vip", p.String()), sem: make(chan struct{}, 1)}, nil
}

func (c Config) withDefaults() Config {
	if c.Announcements == 0 {
		c.Announcements = 3
	}
	if c.Interval == 0 {
		c.Interval = 200 * time.Millisecond
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c Config) validate() error {
	var errs []error
	bad := func(field, rule string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(rule, args...)))
	}
	if c.Interface == "" {
		bad("Interface", "must not be empty")
	}
	switch p, err := netip.ParsePrefix(c.Address); {
	case err != nil:
		bad("Address", "%q is not address/prefix-length: %v", c.Address, err)
	case p.Addr().Zone() != "" || p.Addr().Is4In6():
		bad("Address", "%q must be a plain IPv4 or IPv6 address", c.Address)
	case !p.Addr().IsGlobalUnicast() && !p.Addr().IsPrivate():
		bad("Address", "%q is not a unicast address", c.Address)
	}
	if c.Announcements < 0 {
		bad("Announcements", "must not be negative, got %d", c.Announcements)
	}
	if c.Interval < 0 {
		bad("Interval", "must not be negative, got %v", c.Interval)
	}
	return errors.Join(errs...)
}

// String names the switcher in dns.Multi's errors.
func (s *Switcher) String() string { return fmt.Sprintf("vip %s on %s", s.prefix, s.cfg.Interface) }

// Promote adds the VIP and announces it.
func (s *Switcher) Promote(ctx context.Context, t fence.Token) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("vip: waiting for the previous call on %s: %w", s.prefix, ctx.Err())
	}
	defer func() { <-s.sem }()
	if err := s.guard.Admit(t); err != nil {
		return fmt.Errorf("vip: promote %s: %w", s.prefix, err)
	}
	err := s.inNamespace(func() error {
		link, hw, err := s.link()
		if err != nil {
			return err
		}
		addr := &netlink.Addr{IPNet: ipNet(s.prefix)}
		if s.prefix.Addr().Is6() {
			addr.Flags = unix.IFA_F_NODAD
		}
		if err := netlink.AddrReplace(link, addr); err != nil {
			return fmt.Errorf("vip: promote: add %s to %s: %w", s.prefix, s.cfg.Interface, err)
		}
		return s.announce(ctx, link.Attrs().Index, hw)
	})
	if err != nil {
		return err
	}
	s.log.Info("vip: promoted", "token", t.String(), "announcements", s.cfg.Announcements)
	return nil
}

// Demote removes the VIP.
func (s *Switcher) Demote(ctx context.Context, t fence.Token) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("vip: waiting for the previous call on %s: %w", s.prefix, ctx.Err())
	}
	defer func() { <-s.sem }()
	if err := s.guard.Admit(t); err != nil {
		return fmt.Errorf("vip: demote %s: %w", s.prefix, err)
	}
	err := s.inNamespace(func() error {
		link, _, err := s.link()
		if err != nil {
			return err
		}
		err = netlink.AddrDel(link, &netlink.Addr{IPNet: ipNet(s.prefix)})
		if err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("vip: demote: remove %s from %s: %w", s.prefix, s.cfg.Interface, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.log.Info("vip: demoted", "token", t.String())
	return nil
}

// Holds reports whether the VIP is on the interface now.
func (s *Switcher) Holds(ctx context.Context) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	var held bool
	err := s.inNamespace(func() error {
		link, _, err := s.link()
		if err != nil {
			return err
		}
		addrs, err := netlink.AddrList(link, netlink.FAMILY_ALL)
		if err != nil {
			return fmt.Errorf("vip: list addresses of %s: %w", s.cfg.Interface, err)
		}
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == s.prefix.Addr() {
				held = true
			}
		}
		return nil
	})
	return held, err
}

// link looks up the interface and its Ethernet address.
func (s *Switcher) link() (netlink.Link, net.HardwareAddr, error) {
	link, err := netlink.LinkByName(s.cfg.Interface)
	if err != nil {
		return nil, nil, fmt.Errorf("vip: interface %q: %v: %w", s.cfg.Interface, err, ErrInterface)
	}
	hw := link.Attrs().HardwareAddr
	if len(hw) != 6 {
		return nil, nil, fmt.Errorf("vip: interface %q has hardware address %v, not Ethernet: %w", s.cfg.Interface, hw, ErrInterface)
	}
	return link, hw, nil
}

// inNamespace runs fn in Config.NetNSPath, or directly when it is "".
// fn must not start goroutines that rely on the namespace.
func (s *Switcher) inNamespace(fn func() error) error {
	if s.cfg.NetNSPath == "" {
		return fn()
	}
	ns, err := netns.GetFromPath(s.cfg.NetNSPath)
	if err != nil {
		return fmt.Errorf("vip: open network namespace %s: %w", s.cfg.NetNSPath, err)
	}
	defer ns.Close()
	errc := make(chan error, 1)
	go func() {
		// The thread is never unlocked: it has joined another namespace,
		// so the runtime discards it when this goroutine returns instead
		// of letting other goroutines run in the wrong namespace.
		runtime.LockOSThread()
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("vip: enter network namespace %s: %w", s.cfg.NetNSPath, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

func ipNet(p netip.Prefix) *net.IPNet {
	bits := 32
	if p.Addr().Is6() {
		bits = 128
	}
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), bits)}
}
