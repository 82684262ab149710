//go:build !linux

package main

import (
	"fmt"
	"log/slog"

	"github.com/hakit/hakit/dns"
)

// newVIP refuses: floating addresses are implemented for Linux only.
func newVIP(c *VIPConfig, logger *slog.Logger) (dns.Switcher, error) {
	return nil, fmt.Errorf("%w: switchers.vip: supported on Linux only", ErrConfig)
}
