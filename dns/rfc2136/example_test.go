package rfc2136_test

import (
	"context"
	"errors"
	"log"
	"time"

	"github.com/hakit/hakit/dns"
	"github.com/hakit/hakit/dns/rfc2136"
	"github.com/hakit/hakit/fence"
)

// Point db.example.com at this member on promote, through the zone's
// primary server, with a TSIG key allowed to update the two names.
func Example() {
	sw, err := rfc2136.New(rfc2136.Config{
		Server:  "ns1.example.com:53",
		Zone:    "example.com.",
		Name:    "db.example.com.",
		Type:    "A",
		Targets: []string{"192.0.2.10"},
		TTL:     30,
		Member:  "db-1",
		KeyName: "hakit-update.",
		Secret:  "hk3TiJzq3VR3NiNbpFqQJxS5rkiXbd1BCp+hAEUIoMw=", // from the server's key file
	})
	if err != nil {
		log.Fatal(err)
	}
	// Retry lost races and network trouble; a stale token is final.
	s, err := dns.Retry(sw, dns.DefaultRetryPolicy())
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var term fence.Token = 42 // from lease.Term.Token()
	switch err := s.Promote(ctx, term); {
	case errors.Is(err, fence.ErrStale):
		log.Print("a newer term owns the record; stepping down")
	case err != nil:
		log.Print(err)
	}
}
