package rfc2136

import (
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/hakit/hakit/dns"
	"github.com/hakit/hakit/dns/internal/tokenrec"
	mdns "github.com/miekg/dns"
)

// Config says which record to point at this member and how to reach the
// primary server of its zone.
type Config struct {
	// Server is the primary authoritative server's host:port. Updates
	// and the reads that check them go there, never to a cache. Required.
	Server string
	// Net is "tcp" (the default), "udp" or "tcp-tls" (DNS over TLS,
	// with TLSConfig). TSIG authenticates every message on all three;
	// only "tcp-tls" also hides them. Over "udp" an RRset too big for one
	// datagram cannot be read, and every call on it fails with ErrServer.
	Net string
	// TLSConfig is used with Net "tcp-tls".
	TLSConfig *tls.Config

	// Zone is the zone's apex, e.g. "example.com.". Required.
	Zone string
	// Name is the record pointed at this member, e.g. "db.example.com.";
	// it must be inside Zone. Required.
	Name string
	// Type is "A", "AAAA" or "CNAME". Required.
	Type string
	// Targets are the record's data: IPv4 addresses for A, IPv6
	// addresses for AAAA, exactly one domain name for CNAME. Required.
	Targets []string
	// TTL of the records written; 0 means 30 seconds. Keep it short: it
	// bounds how long resolvers keep sending clients to the old member.
	TTL uint32
	// TokenName is the owner of the TXT record holding the fencing token;
	// "" means "_hakit." + Name.
	TokenName string

	// Member is this member's ID, written next to the token. Required.
	Member string

	// KeyName is the TSIG key's name, e.g. "hakit-update." Required.
	KeyName string
	// Secret is the TSIG key's secret, base64 as in BIND and Knot
	// configuration files. Required. It is never logged.
	Secret string
	// Algorithm is the TSIG algorithm; "" means hmac-sha256. One of
	// hmac-sha256, hmac-sha384, hmac-sha512, hmac-sha224, hmac-sha1.
	Algorithm string

	// Timeout bounds each exchange with the server; 0 means 5 seconds.
	Timeout time.Duration
	// Logger receives one record per change; nil means slog.Default().
	Logger *slog.Logger
}

var algorithms = map[string]string{
	"hmac-sha256": mdns.HmacSHA256,
	"hmac-sha384": mdns.HmacSHA384,
	"hmac-sha512": mdns.HmacSHA512,
	"hmac-sha224": mdns.HmacSHA224,
	"hmac-sha1":   mdns.HmacSHA1,
}

// ErrConfig is wrapped by every error New returns for a Config it
// refuses; each message reads "rfc2136: invalid config: Field: rule". It
// also matches dns.ErrConfig.
var ErrConfig error = configError{}

type configError struct{}

func (configError) Error() string        { return "rfc2136: invalid config" }
func (configError) Is(target error) bool { return target == dns.ErrConfig }

// withDefaults returns c with every zero field that has a default set to
// it, and Targets copied.
func (c Config) withDefaults() Config {
	c.Targets = slices.Clone(c.Targets)
	if c.Net == "" {
		c.Net = "tcp"
	}
	if c.TokenName == "" && c.Name != "" {
		c.TokenName = "_hakit." + c.Name
	}
	if c.TTL == 0 {
		c.TTL = 30
	}
	if c.Algorithm == "" {
		c.Algorithm = "hmac-sha256"
	}
	if c.Timeout == 0 {
		c.Timeout = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// recordType returns the DNS type code of c.Type, or 0.
func (c *Config) recordType() uint16 {
	switch strings.ToUpper(c.Type) {
	case "A":
		return mdns.TypeA
	case "AAAA":
		return mdns.TypeAAAA
	case "CNAME":
		return mdns.TypeCNAME
	}
	return 0
}

// validate reports every rule c breaks, joined; it changes nothing.
func (c *Config) validate() error {
	var errs []error
	bad := func(field, rule string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(rule, args...)))
	}
	if _, _, err := net.SplitHostPort(c.Server); err != nil {
		bad("Server", "%q is not host:port: %v", c.Server, err)
	}
	switch c.Net {
	case "tcp", "udp", "tcp-tls":
	default:
		bad("Net", "%q is not tcp, udp or tcp-tls", c.Net)
	}
	names := map[string]bool{}
	for _, f := range []struct{ field, v string }{{"Zone", c.Zone}, {"Name", c.Name}, {"TokenName", c.TokenName}} {
		switch _, ok := mdns.IsDomainName(f.v); {
		case f.v == "":
			bad(f.field, "must not be empty")
		case !ok:
			bad(f.field, "%q is not a domain name", f.v)
		default:
			names[f.field] = true
		}
	}
	zone, name, tokenName := mdns.CanonicalName(c.Zone), mdns.CanonicalName(c.Name), mdns.CanonicalName(c.TokenName)
	if names["Zone"] && names["Name"] && !mdns.IsSubDomain(zone, name) {
		bad("Name", "%q is not in Zone %q", c.Name, c.Zone)
	}
	if names["Zone"] && names["TokenName"] && !mdns.IsSubDomain(zone, tokenName) {
		bad("TokenName", "%q is not in Zone %q", c.TokenName, c.Zone)
	}
	if names["Name"] && names["TokenName"] && tokenName == name {
		bad("TokenName", "%q must differ from Name", c.TokenName)
	}
	typ := c.recordType()
	if typ == 0 {
		bad("Type", "%q is not A, AAAA or CNAME", c.Type)
	}
	if len(c.Targets) == 0 {
		bad("Targets", "must not be empty")
	}
	if typ == mdns.TypeCNAME && len(c.Targets) > 1 {
		bad("Targets", "a CNAME has exactly one target, got %d", len(c.Targets))
	}
	for i, tgt := range c.Targets {
		switch typ {
		case mdns.TypeA, mdns.TypeAAAA:
			a, err := netip.ParseAddr(tgt)
			if err != nil || a.Zone() != "" || (typ == mdns.TypeA) != a.Is4() {
				bad(fmt.Sprintf("Targets[%d]", i), "%q is not an IPv%s address", tgt, map[bool]string{true: "4", false: "6"}[typ == mdns.TypeA])
			}
		case mdns.TypeCNAME:
			if _, ok := mdns.IsDomainName(tgt); !ok {
				bad(fmt.Sprintf("Targets[%d]", i), "%q is not a domain name", tgt)
			}
		}
	}
	if err := tokenrec.CheckMember(c.Member); err != nil {
		bad("Member", "%v", err)
	}
	if c.KeyName == "" {
		bad("KeyName", "must not be empty")
	}
	if c.Secret == "" {
		bad("Secret", "must not be empty")
	} else if _, err := base64.StdEncoding.DecodeString(c.Secret); err != nil {
		// The decoder's error would quote the secret's bytes; name only
		// the field.
		bad("Secret", "is not valid base64")
	}
	if _, ok := algorithms[strings.ToLower(strings.TrimSuffix(c.Algorithm, "."))]; !ok {
		bad("Algorithm", "%q is not supported", c.Algorithm)
	}
	if c.Timeout < 0 {
		bad("Timeout", "must not be negative, got %v", c.Timeout)
	}
	return errors.Join(errs...)
}

// normalized returns a valid c with names in canonical form and the
// algorithm as miekg/dns names it, and the record's type code.
func (c Config) normalized() (Config, uint16) {
	c.Zone, c.Name, c.TokenName = mdns.CanonicalName(c.Zone), mdns.CanonicalName(c.Name), mdns.CanonicalName(c.TokenName)
	c.KeyName = mdns.CanonicalName(c.KeyName)
	c.Algorithm = algorithms[strings.ToLower(strings.TrimSuffix(c.Algorithm, "."))]
	typ := c.recordType()
	if typ == mdns.TypeCNAME {
		c.Targets[0] = mdns.CanonicalName(c.Targets[0])
	}
	return c, typ
}
