//go:build linux

package vip_test

import (
	"context"
	"log"
	"time"

	"github.com/hakit/hakit/dns"
	"github.com/hakit/hakit/dns/vip"
)

// Float 192.0.2.100 to this member together with its health endpoint.
func Example() {
	addr, err := vip.New(vip.Config{
		Interface:     "eth0",
		Address:       "192.0.2.100/24",
		Announcements: 3,
		Interval:      200 * time.Millisecond,
	})
	if err != nil {
		log.Fatal(err)
	}
	health := &dns.Health{}
	sw := dns.Multi(addr, health)
	ctx := context.Background()
	if err := sw.Promote(ctx, 42); err != nil {
		log.Print(err)
	}
	// ... the work runs; on losing the term:
	if err := sw.Demote(ctx, 42); err != nil {
		log.Print(err)
	}
}
