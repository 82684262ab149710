package route53

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/hakit/hakit/dns/internal/tokenrec"
)

// API is the part of the Route 53 client the switcher uses;
// *route53.Client implements it.
type API interface {
	ChangeResourceRecordSets(ctx context.Context, in *route53.ChangeResourceRecordSetsInput, opts ...func(*route53.Options)) (*route53.ChangeResourceRecordSetsOutput, error)
	ListResourceRecordSets(ctx context.Context, in *route53.ListResourceRecordSetsInput, opts ...func(*route53.Options)) (*route53.ListResourceRecordSetsOutput, error)
	GetChange(ctx context.Context, in *route53.GetChangeInput, opts ...func(*route53.Options)) (*route53.GetChangeOutput, error)
}

// Config says which record set to point at this member.
type Config struct {
	// Client talks to Route 53 (HTTPS). Required.
	Client API
	// HostedZoneID is the zone's ID, e.g. "Z1D633PJN98FT9". Required.
	HostedZoneID string
	// Name is the record pointed at this member, e.g. "db.example.com.".
	// Required.
	Name string
	// Type is "A", "AAAA" or "CNAME". Required.
	Type string
	// Targets are the record's values: IPv4 addresses for A, IPv6
	// addresses for AAAA, exactly one domain name for CNAME. Required.
	Targets []string
	// TTL of the records written, in seconds; 0 means 30.
	TTL int64
	// TokenName is the owner of the TXT record holding the fencing token;
	// "" means "_hakit." + Name. It is a simple (non-failover) record.
	TokenName string
	// Member is this member's ID, written next to the token. Required.
	Member string

	// Failover, if set, makes the record a failover routing record:
	// "PRIMARY" or "SECONDARY". It requires SetIdentifier.
	Failover string
	// SetIdentifier tells apart the record sets of one name and type in
	// failover routing. Required with Failover, refused without it.
	SetIdentifier string
	// HealthCheckID is the Route 53 health check attached to the record,
	// typically one polling this member's dns.Health endpoint. Optional.
	HealthCheckID string

	// PollInitial is the first wait between GetChange calls while a
	// change propagates; 0 means 2s. Waits double up to PollMax.
	PollInitial time.Duration
	// PollMax caps the wait between GetChange calls; 0 means 15s.
	PollMax time.Duration

	// Logger receives one record per change; nil discards.
	Logger *slog.Logger
}

// validate checks c and fills in defaults.
func (c *Config) validate() error {
	if c.Client == nil {
		return fmt.Errorf("route53: config: Client is nil")
	}
	if c.HostedZoneID == "" {
		return fmt.Errorf("route53: config: HostedZoneID is empty")
	}
	if c.Name == "" {
		return fmt.Errorf("route53: config: Name is empty")
	}
	c.Name = fqdn(c.Name)
	if c.TokenName == "" {
		c.TokenName = "_hakit." + c.Name
	}
	c.TokenName = fqdn(c.TokenName)
	if c.TokenName == c.Name {
		return fmt.Errorf("route53: config: TokenName %q must differ from Name", c.TokenName)
	}
	c.Type = strings.ToUpper(c.Type)
	switch c.Type {
	case "A", "AAAA", "CNAME":
	default:
		return fmt.Errorf("route53: config: Type %q is not A, AAAA or CNAME", c.Type)
	}
	if len(c.Targets) == 0 {
		return fmt.Errorf("route53: config: Targets is empty")
	}
	for i, tgt := range c.Targets {
		switch c.Type {
		case "A", "AAAA":
			a, err := netip.ParseAddr(tgt)
			if err != nil || a.Zone() != "" || (c.Type == "A") != a.Is4() {
				return fmt.Errorf("route53: config: Targets[%d] %q is not an %s address", i, tgt, map[string]string{"A": "IPv4", "AAAA": "IPv6"}[c.Type])
			}
			c.Targets[i] = a.String()
		case "CNAME":
			if len(c.Targets) != 1 {
				return fmt.Errorf("route53: config: a CNAME has exactly one target, got %d", len(c.Targets))
			}
			c.Targets[0] = fqdn(tgt)
		}
	}
	if c.TTL < 0 {
		return fmt.Errorf("route53: config: TTL %d is negative", c.TTL)
	}
	if c.TTL == 0 {
		c.TTL = 30
	}
	if err := tokenrec.CheckMember(c.Member); err != nil {
		return fmt.Errorf("route53: config: Member: %w", err)
	}
	switch c.Failover {
	case "":
		if c.SetIdentifier != "" {
			return fmt.Errorf("route53: config: SetIdentifier %q needs Failover PRIMARY or SECONDARY", c.SetIdentifier)
		}
	case "PRIMARY", "SECONDARY":
		if c.SetIdentifier == "" {
			return fmt.Errorf("route53: config: Failover %s needs a SetIdentifier", c.Failover)
		}
	default:
		return fmt.Errorf("route53: config: Failover %q is not PRIMARY or SECONDARY", c.Failover)
	}
	if c.PollInitial < 0 || c.PollMax < 0 {
		return fmt.Errorf("route53: config: PollInitial %v and PollMax %v must not be negative", c.PollInitial, c.PollMax)
	}
	if c.PollInitial == 0 {
		c.PollInitial = 2 * time.Second
	}
	if c.PollMax == 0 {
		c.PollMax = 15 * time.Second
	}
	if c.PollMax < c.PollInitial {
		return fmt.Errorf("route53: config: PollMax %v is below PollInitial %v", c.PollMax, c.PollInitial)
	}
	return nil
}

// fqdn lowercases a name and gives it the trailing dot Route 53 returns.
func fqdn(n string) string {
	n = strings.ToLower(n)
	if !strings.HasSuffix(n, ".") {
		n += "."
	}
	return n
}
