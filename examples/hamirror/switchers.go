package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/hakit/hakit/dns"
	"github.com/hakit/hakit/dns/rfc2136"
)

// buildSwitchers returns the switcher chain: the /lb health endpoint
// first (it is always on, and cheap to roll back), then exec hooks,
// RFC 2136 and the VIP, each remote one wrapped in dns.Retry so that one
// dropped packet does not fail a promotion.
func buildSwitchers(c *Config, health *dns.Health, logger *slog.Logger) (dns.Switcher, error) {
	chain := []dns.Switcher{health}
	sw := c.Switchers
	if e := sw.Exec; e != nil {
		x, err := dns.NewExec(dns.ExecConfig{
			Member:  c.ID,
			Promote: e.Promote,
			Demote:  e.Demote,
			Timeout: e.Timeout.D(),
			Env:     e.Env,
			Logger:  logger.With("switcher", "exec"),
		})
		if err != nil {
			return nil, fmt.Errorf("%w: switchers.exec: %v", ErrConfig, err)
		}
		chain = append(chain, x)
	}
	if r := sw.RFC2136; r != nil {
		secret, err := os.ReadFile(r.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("%w: switchers.rfc2136.secret_file: %v", ErrConfig, err)
		}
		s, err := rfc2136.New(rfc2136.Config{
			Server:    r.Server,
			Zone:      r.Zone,
			Name:      r.Name,
			Type:      r.Type,
			Targets:   r.Targets,
			TTL:       r.TTL,
			Member:    c.ID,
			KeyName:   r.KeyName,
			Secret:    strings.TrimSpace(string(secret)),
			Algorithm: r.Algorithm,
			Logger:    logger.With("switcher", "rfc2136"),
		})
		if err != nil {
			return nil, fmt.Errorf("%w: switchers.rfc2136: %v", ErrConfig, err)
		}
		retrying, err := dns.Retry(s, dns.DefaultRetryPolicy())
		if err != nil {
			return nil, fmt.Errorf("%w: switchers.rfc2136: %v", ErrConfig, err)
		}
		chain = append(chain, retrying)
	}
	if v := sw.VIP; v != nil {
		s, err := newVIP(v, logger.With("switcher", "vip"))
		if err != nil {
			return nil, err
		}
		chain = append(chain, s)
	}
	return dns.Multi(chain...), nil
}
