//go:build linux

package main

import (
	"fmt"
	"log/slog"

	"github.com/hakit/hakit/dns"
	"github.com/hakit/hakit/dns/vip"
)

// newVIP builds the floating-address switcher (Linux: netlink).
func newVIP(c *VIPConfig, logger *slog.Logger) (dns.Switcher, error) {
	s, err := vip.New(vip.Config{Interface: c.Interface, Address: c.Address, Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("%w: switchers.vip: %v", ErrConfig, err)
	}
	return s, nil
}
