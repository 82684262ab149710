package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/hakit/hakit/storage"
)

// Validate applies the defaults and checks every rule, returning all the
// violations joined (each wraps ErrConfig and starts with the field's JSON
// path), or nil. Files named by the config are not opened here: that
// happens when the daemon starts, and those errors name the field too.
func (c *Config) Validate() error {
	c.applyDefaults()
	v := &violations{}

	v.require("id", c.ID)
	if c.ID != "" && len(c.Members) > 0 {
		if _, ok := c.Members[c.ID]; !ok {
			v.add("id", "must be one of the members (%s)", strings.Join(c.memberIDs(), ", "))
		}
	}
	v.hostPort("listen", c.Listen, true)
	if len(c.Members) == 0 {
		v.add("members", "at least one member is required")
	}
	raftAddrs := map[string]string{}
	for _, id := range c.memberIDs() {
		m := c.Members[id]
		f := "members." + id
		if strings.TrimSpace(id) == "" || strings.ContainsAny(id, " \t\n/") {
			v.add(f, "a member ID must be non-empty and contain no spaces or slashes")
		}
		v.apiURL(f+".api", m.API, c.TLS != nil)
		if c.Backend == "raft" {
			v.hostPort(f+".raft", m.Raft, true)
			if other, dup := raftAddrs[m.Raft]; dup && m.Raft != "" {
				v.add(f+".raft", "address %s is also member %s's", m.Raft, other)
			}
			raftAddrs[m.Raft] = id
		}
	}
	v.tlsFiles("tls", c.TLS, true, false)

	v.oneOf("log.format", c.Log.Format, "json", "text")
	v.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")

	v.source(&c.Source)
	v.sink(&c.Sink, c.Source.Kind)
	if err := storage.ValidateKey(c.Stream.CheckpointKey); err != nil {
		v.add("stream.checkpoint_key", "%v", err)
	}
	if c.Stream.MaxRecords < 0 {
		v.add("stream.max_records", "must not be negative")
	}
	v.nonNegative("stream.heartbeat_interval", c.Stream.HeartbeatInterval.D())

	switch c.Backend {
	case "raft":
		v.require("raft.data_dir", c.Raft.DataDir)
		v.nonNegative("raft.tick_interval", c.Raft.TickInterval.D())
		if t := c.Raft.ElectionTicks; t != 0 && t < 3 {
			v.add("raft.election_ticks", "must be at least 3 (or 0 for the default 10)")
		}
		v.nonNegative("raft.drift_margin", c.Raft.DriftMargin.D())
		v.tlsFiles("raft.tls", c.Raft.TLS, true, true)
		switch {
		case c.Raft.TLS != nil && c.Raft.Insecure:
			v.add("raft.insecure", "must not be set together with raft.tls")
		case c.Raft.TLS == nil && !c.Raft.Insecure && len(c.Members) > 1:
			v.add("raft.tls", "is required for a group of more than one member: mutual TLS with a certificate per member "+
				"naming hakit://member/<id> (\"hamirror certs\" writes a set); or set raft.insecure on a trusted, isolated network")
		}
	case "etcd":
		if len(c.Etcd.Endpoints) == 0 {
			v.add("etcd.endpoints", "at least one endpoint is required with backend \"etcd\"")
		}
		for i, e := range c.Etcd.Endpoints {
			v.endpoint(fmt.Sprintf("etcd.endpoints[%d]", i), e)
		}
		if ttl := c.Etcd.TTL.D(); ttl < time.Second || ttl%time.Second != 0 {
			v.add("etcd.ttl", "must be a whole number of seconds, at least 1s (etcd grants leases in seconds), not %s", ttl)
		}
		v.positive("etcd.dial_timeout", c.Etcd.DialTimeout.D())
		v.tlsFiles("etcd.tls", c.Etcd.TLS, false, true)
	default:
		v.add("backend", "must be \"raft\" or \"etcd\", not %q", c.Backend)
	}

	v.nonNegative("ha.hold_off", c.HA.HoldOff.D())
	v.nonNegative("ha.stop_timeout", c.HA.StopTimeout.D())
	v.nonNegative("ha.promote_delay", c.HA.PromoteDelay.D())
	names := map[string]bool{}
	for i, ch := range c.HA.Checks {
		f := fmt.Sprintf("ha.checks[%d]", i)
		v.require(f+".name", ch.Name)
		if names[ch.Name] && ch.Name != "" {
			v.add(f+".name", "%q is used by an earlier check", ch.Name)
		}
		names[ch.Name] = true
		if (ch.TCP == "") == (ch.PIDFile == "") {
			v.add(f, "set exactly one of tcp and pid_file")
		}
		if ch.TCP != "" {
			v.hostPort(f+".tcp", ch.TCP, true)
		}
		v.nonNegative(f+".interval", ch.Interval.D())
		if ch.Rise < 0 || ch.Fall < 0 {
			v.add(f, "rise and fall must not be negative")
		}
	}

	if e := c.Switchers.Exec; e != nil {
		if len(e.Promote)+len(e.Demote) == 0 {
			v.add("switchers.exec", "needs at least one promote or demote command")
		}
		for i, argv := range e.Promote {
			v.argv(fmt.Sprintf("switchers.exec.promote[%d]", i), argv)
		}
		for i, argv := range e.Demote {
			v.argv(fmt.Sprintf("switchers.exec.demote[%d]", i), argv)
		}
		v.nonNegative("switchers.exec.timeout", e.Timeout.D())
	}
	if r := c.Switchers.RFC2136; r != nil {
		v.hostPort("switchers.rfc2136.server", r.Server, true)
		v.require("switchers.rfc2136.zone", r.Zone)
		v.require("switchers.rfc2136.name", r.Name)
		v.oneOf("switchers.rfc2136.type", r.Type, "A", "AAAA", "CNAME")
		if len(r.Targets) == 0 {
			v.add("switchers.rfc2136.targets", "at least one target is required")
		}
		v.require("switchers.rfc2136.key_name", r.KeyName)
		v.require("switchers.rfc2136.secret_file", r.SecretFile)
	}
	if p := c.Switchers.VIP; p != nil {
		v.require("switchers.vip.interface", p.Interface)
		if _, err := netip.ParsePrefix(p.Address); err != nil {
			v.add("switchers.vip.address", "must be an address with a prefix length such as 192.0.2.10/24: %v", err)
		}
	}
	return v.err()
}

// memberIDs returns the member IDs, sorted.
func (c *Config) memberIDs() []string {
	ids := make([]string, 0, len(c.Members))
	for id := range c.Members {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// violations collects rule violations in the order they were found.
type violations struct{ errs []error }

func (v *violations) add(field, rule string, args ...any) {
	v.errs = append(v.errs, fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(rule, args...)))
}

func (v *violations) err() error { return errors.Join(v.errs...) }

func (v *violations) require(field, value string) {
	if strings.TrimSpace(value) == "" {
		v.add(field, "is required")
	}
}

func (v *violations) oneOf(field, value string, allowed ...string) {
	if !slices.Contains(allowed, value) {
		v.add(field, "must be one of %s, not %q", strings.Join(allowed, ", "), value)
	}
}

func (v *violations) nonNegative(field string, d time.Duration) {
	if d < 0 {
		v.add(field, "must not be negative, not %s", d)
	}
}

func (v *violations) positive(field string, d time.Duration) {
	if d <= 0 {
		v.add(field, "must be positive, not %s", d)
	}
}

func (v *violations) hostPort(field, value string, required bool) {
	if value == "" {
		if required {
			v.add(field, "is required (host:port)")
		}
		return
	}
	if _, port, err := net.SplitHostPort(value); err != nil || port == "" {
		v.add(field, "must be host:port, not %q", value)
	}
}

func (v *violations) apiURL(field, value string, wantHTTPS bool) {
	if value == "" {
		v.add(field, "is required (a base URL such as https://10.0.0.1:8443)")
		return
	}
	u, err := url.Parse(value)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.add(field, "must be an http:// or https:// URL with a host, not %q", value)
		return
	}
	if wantHTTPS && u.Scheme != "https" {
		v.add(field, "must be an https:// URL because tls is set")
	}
}

func (v *violations) endpoint(field, value string) {
	if strings.Contains(value, "://") {
		if u, err := url.Parse(value); err != nil || u.Host == "" {
			v.add(field, "must be a URL with a host or host:port, not %q", value)
		}
		return
	}
	v.hostPort(field, value, true)
}

func (v *violations) argv(field string, argv []string) {
	if len(argv) == 0 || strings.TrimSpace(argv[0]) == "" {
		v.add(field, "must be a non-empty argument vector, program first")
	}
}

// tlsFiles checks a TLS block: the certificate and key go together;
// needKeyPair requires them, needCA requires the CA bundle.
func (v *violations) tlsFiles(field string, t *TLSFiles, needKeyPair, needCA bool) {
	if t == nil {
		return
	}
	if (t.Cert == "") != (t.Key == "") {
		v.add(field, "cert and key must be set together")
	} else if needKeyPair && t.Cert == "" {
		v.add(field, "cert and key are required")
	}
	if needCA && t.CA == "" {
		v.add(field+".ca", "is required")
	}
}
