package route53_test

import (
	"context"
	"log"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	awsr53 "github.com/aws/aws-sdk-go-v2/service/route53"

	"github.com/hakit/hakit/dns"
	"github.com/hakit/hakit/dns/route53"
)

// The PRIMARY record of a Route 53 failover pair, with a health check that
// polls this member's dns.Health endpoint.
func Example() {
	client := awsr53.New(awsr53.Options{
		Region: "us-east-1",
		// In production, credentials usually come from the environment or
		// an instance role (github.com/aws/aws-sdk-go-v2/config).
		Credentials: credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
	})
	sw, err := route53.New(route53.Config{
		Client:        client,
		HostedZoneID:  "Z1D633PJN98FT9",
		Name:          "db.example.com.",
		Type:          "A",
		Targets:       []string{"192.0.2.10"},
		Member:        "db-east",
		Failover:      "PRIMARY",
		SetIdentifier: "db-east",
		HealthCheckID: "abcdef11-2222-3333-4444-555555fedcba",
	})
	if err != nil {
		log.Fatal(err)
	}
	// Route 53 changes take tens of seconds to reach INSYNC.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	retrying, err := dns.Retry(sw, dns.DefaultRetryPolicy())
	if err != nil {
		log.Fatal(err)
	}
	if err := retrying.Promote(ctx, 42); err != nil {
		log.Print(err)
	}
}
