package rfc2136

import (
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

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
	// Logger receives one record per change; nil discards.
	Logger *slog.Logger
}

var algorithms = map[string]string{
	"hmac-sha256": mdns.HmacSHA256,
	"hmac-sha384": mdns.HmacSHA384,
	"hmac-sha512": mdns.HmacSHA512,
	"hmac-sha224": mdns.HmacSHA224,
	"hmac-sha1":   mdns.HmacSHA1,
}

// validate checks c and fills in defaults; it returns the record's type
// code and the records to write.
func (c *Config) validate() (uint16, error) {
	if _, _, err := net.SplitHostPort(c.Server); err != nil {
		return 0, fmt.Errorf("rfc2136: config: Server %q is not host:port: %w", c.Server, err)
	}
	switch c.Net {
	case "":
		c.Net = "tcp"
	case "tcp", "udp", "tcp-tls":
	default:
		return 0, fmt.Errorf("rfc2136: config: Net %q is not tcp, udp or tcp-tls", c.Net)
	}
	for _, f := range []struct {
		field string
		v     *string
	}{{"Zone", &c.Zone}, {"Name", &c.Name}} {
		if *f.v == "" {
			return 0, fmt.Errorf("rfc2136: config: %s is empty", f.field)
		}
		if _, ok := mdns.IsDomainName(*f.v); !ok {
			return 0, fmt.Errorf("rfc2136: config: %s %q is not a domain name", f.field, *f.v)
		}
		*f.v = mdns.CanonicalName(*f.v)
	}
	if !mdns.IsSubDomain(c.Zone, c.Name) {
		return 0, fmt.Errorf("rfc2136: config: Name %q is not in Zone %q", c.Name, c.Zone)
	}
	if c.TokenName == "" {
		c.TokenName = "_hakit." + c.Name
	}
	if _, ok := mdns.IsDomainName(c.TokenName); !ok {
		return 0, fmt.Errorf("rfc2136: config: TokenName %q is not a domain name", c.TokenName)
	}
	c.TokenName = mdns.CanonicalName(c.TokenName)
	if !mdns.IsSubDomain(c.Zone, c.TokenName) {
		return 0, fmt.Errorf("rfc2136: config: TokenName %q is not in Zone %q", c.TokenName, c.Zone)
	}
	if c.TokenName == c.Name {
		return 0, fmt.Errorf("rfc2136: config: TokenName %q must differ from Name", c.TokenName)
	}
	var typ uint16
	switch strings.ToUpper(c.Type) {
	case "A":
		typ = mdns.TypeA
	case "AAAA":
		typ = mdns.TypeAAAA
	case "CNAME":
		typ = mdns.TypeCNAME
	default:
		return 0, fmt.Errorf("rfc2136: config: Type %q is not A, AAAA or CNAME", c.Type)
	}
	if len(c.Targets) == 0 {
		return 0, fmt.Errorf("rfc2136: config: Targets is empty")
	}
	for i, tgt := range c.Targets {
		switch typ {
		case mdns.TypeA, mdns.TypeAAAA:
			a, err := netip.ParseAddr(tgt)
			if err != nil || a.Zone() != "" || (typ == mdns.TypeA) != a.Is4() {
				return 0, fmt.Errorf("rfc2136: config: Targets[%d] %q is not an IPv%s address", i, tgt, map[bool]string{true: "4", false: "6"}[typ == mdns.TypeA])
			}
		case mdns.TypeCNAME:
			if len(c.Targets) != 1 {
				return 0, fmt.Errorf("rfc2136: config: a CNAME has exactly one target, got %d", len(c.Targets))
			}
			if _, ok := mdns.IsDomainName(tgt); !ok {
				return 0, fmt.Errorf("rfc2136: config: Targets[0] %q is not a domain name", tgt)
			}
			c.Targets[0] = mdns.CanonicalName(tgt)
		}
	}
	if c.TTL == 0 {
		c.TTL = 30
	}
	if err := tokenrec.CheckMember(c.Member); err != nil {
		return 0, fmt.Errorf("rfc2136: config: Member: %w", err)
	}
	if c.KeyName == "" {
		return 0, fmt.Errorf("rfc2136: config: KeyName is empty")
	}
	c.KeyName = mdns.CanonicalName(c.KeyName)
	if c.Secret == "" {
		return 0, fmt.Errorf("rfc2136: config: Secret is empty")
	}
	if _, err := base64.StdEncoding.DecodeString(c.Secret); err != nil {
		// The error would quote the secret's bytes; name only the field.
		return 0, fmt.Errorf("rfc2136: config: Secret is not valid base64")
	}
	if c.Algorithm == "" {
		c.Algorithm = "hmac-sha256"
	}
	alg, ok := algorithms[strings.ToLower(strings.TrimSuffix(c.Algorithm, "."))]
	if !ok {
		return 0, fmt.Errorf("rfc2136: config: Algorithm %q is not supported", c.Algorithm)
	}
	c.Algorithm = alg
	if c.Timeout < 0 {
		return 0, fmt.Errorf("rfc2136: config: Timeout %v is negative", c.Timeout)
	}
	if c.Timeout == 0 {
		c.Timeout = 5 * time.Second
	}
	return typ, nil
}
