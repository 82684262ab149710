package route53

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/route53"

	"github.com/hakit/hakit/dns"
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
	// PollMax caps the wait between GetChange calls; 0 means 15s (or
	// PollInitial, if that is longer).
	PollMax time.Duration

	// Logger receives one record per change; nil means slog.Default().
	Logger *slog.Logger
}

// ErrConfig is wrapped by every error New returns for a Config it
// refuses; each message reads "route53: invalid config: Field: rule". It
// also matches dns.ErrConfig.
var ErrConfig error = configError{}

type configError struct{}

func (configError) Error() string        { return "route53: invalid config" }
func (configError) Is(target error) bool { return target == dns.ErrConfig }

// withDefaults returns c with every zero field that has a default set to
// it, and Targets copied.
func (c Config) withDefaults() Config {
	c.Targets = slices.Clone(c.Targets)
	if c.TokenName == "" && c.Name != "" {
		c.TokenName = "_hakit." + c.Name
	}
	if c.TTL == 0 {
		c.TTL = 30
	}
	if c.PollInitial == 0 {
		c.PollInitial = 2 * time.Second
	}
	if c.PollMax == 0 {
		c.PollMax = max(15*time.Second, c.PollInitial)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// validate reports every rule c breaks, joined; it changes nothing.
func (c *Config) validate() error {
	var errs []error
	bad := func(field, rule string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(rule, args...)))
	}
	if c.Client == nil {
		bad("Client", "is required")
	}
	if c.HostedZoneID == "" {
		bad("HostedZoneID", "must not be empty")
	}
	if c.Name == "" {
		bad("Name", "must not be empty")
	} else if fqdn(c.TokenName) == fqdn(c.Name) {
		bad("TokenName", "%q must differ from Name", c.TokenName)
	}
	typ := strings.ToUpper(c.Type)
	switch typ {
	case "A", "AAAA", "CNAME":
	default:
		bad("Type", "%q is not A, AAAA or CNAME", c.Type)
	}
	if len(c.Targets) == 0 {
		bad("Targets", "must not be empty")
	}
	if typ == "CNAME" && len(c.Targets) > 1 {
		bad("Targets", "a CNAME has exactly one target, got %d", len(c.Targets))
	}
	if typ == "A" || typ == "AAAA" {
		for i, tgt := range c.Targets {
			a, err := netip.ParseAddr(tgt)
			if err != nil || a.Zone() != "" || (typ == "A") != a.Is4() {
				bad(fmt.Sprintf("Targets[%d]", i), "%q is not an %s address", tgt, map[string]string{"A": "IPv4", "AAAA": "IPv6"}[typ])
			}
		}
	}
	if c.TTL < 0 {
		bad("TTL", "must not be negative, got %d", c.TTL)
	}
	if err := tokenrec.CheckMember(c.Member); err != nil {
		bad("Member", "%v", err)
	}
	switch c.Failover {
	case "":
		if c.SetIdentifier != "" {
			bad("SetIdentifier", "%q needs Failover PRIMARY or SECONDARY", c.SetIdentifier)
		}
	case "PRIMARY", "SECONDARY":
		if c.SetIdentifier == "" {
			bad("SetIdentifier", "Failover %s needs a SetIdentifier", c.Failover)
		}
	default:
		bad("Failover", "%q is not PRIMARY or SECONDARY", c.Failover)
	}
	if c.PollInitial < 0 {
		bad("PollInitial", "must not be negative, got %v", c.PollInitial)
	}
	if c.PollMax < c.PollInitial {
		bad("PollMax", "must be at least PollInitial %v, got %v", c.PollInitial, c.PollMax)
	}
	return errors.Join(errs...)
}

// normalized returns a valid c with names as Route 53 returns them
// (lower case, trailing dot), the type in upper case and addresses in
// canonical form.
func (c Config) normalized() Config {
	c.Name, c.TokenName = fqdn(c.Name), fqdn(c.TokenName)
	c.Type = strings.ToUpper(c.Type)
	for i, tgt := range c.Targets {
		if c.Type == "CNAME" {
			c.Targets[i] = fqdn(tgt)
		} else {
			c.Targets[i] = netip.MustParseAddr(tgt).String()
		}
	}
	return c
}

// fqdn lowercases a name and gives it the trailing dot Route 53 returns.
func fqdn(n string) string {
	n = strings.ToLower(n)
	if !strings.HasSuffix(n, ".") {
		n += "."
	}
	return n
}
