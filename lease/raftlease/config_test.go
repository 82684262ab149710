package raftlease

import (
	"crypto/tls"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hakit/hakit/lease/raftlease/raftcert"
)

func baseConfig() Config {
	return Config{ID: "a", Peers: map[string]string{"a": "127.0.0.1:1", "b": "127.0.0.1:2", "c": "127.0.0.1:3"}, DataDir: "x", Insecure: true}
}

func TestConfigValidation(t *testing.T) {
	ca, err := raftcert.NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	memberTLS, err := ca.MemberConfig("a")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		edit  func(*Config)
		field string // the message names "raftlease: invalid config: <field>: "
	}{
		{"no ID", func(c *Config) { c.ID = "" }, "ID"},
		{"long ID", func(c *Config) { c.ID = strings.Repeat("x", 300) }, "ID"},
		{"self not in peers", func(c *Config) { c.ID = "z" }, "Peers"},
		{"no data dir", func(c *Config) { c.DataDir = "" }, "DataDir"},
		{"empty address", func(c *Config) { c.Peers["b"] = "" }, "Peers"},
		{"tick too short", func(c *Config) { c.TickInterval = time.Microsecond }, "TickInterval"},
		{"heartbeat ticks", func(c *Config) { c.HeartbeatTicks = -1 }, "HeartbeatTicks"},
		{"election ticks", func(c *Config) { c.ElectionTicks = 2 }, "ElectionTicks"},
		{"election below heartbeat", func(c *Config) { c.ElectionTicks, c.HeartbeatTicks = 5, 5 }, "ElectionTicks"},
		{"drift too large", func(c *Config) { c.DriftMargin = time.Second }, "DriftMargin"},
		{"negative drift", func(c *Config) { c.DriftMargin = -1 }, "DriftMargin"},
		{"compaction margin", func(c *Config) { c.SnapshotEntries, c.CompactionMargin = 1, 1000 }, "CompactionMargin"},
		{"value limit", func(c *Config) { c.MaxValueBytes = 1 << 30 }, "MaxValueBytes"},
		{"joining without peers", func(c *Config) { c.Join, c.Peers = true, nil }, "Peers"},
		{"joining without own address", func(c *Config) { c.Join = true; delete(c.Peers, "a") }, "Peers"},
		{"plain TCP for a group", func(c *Config) { c.Insecure = false }, "TLS"},
		{"TLS and Insecure", func(c *Config) { c.TLS = memberTLS }, "Insecure"},
		{"TLS without a certificate", func(c *Config) {
			c.Insecure, c.TLS = false, &tls.Config{RootCAs: ca.Pool()}
		}, "TLS.Certificates"},
		{"TLS without the members' CA", func(c *Config) {
			c.Insecure, c.TLS = false, &tls.Config{Certificates: memberTLS.Certificates}
		}, "TLS.RootCAs"},
		{"TLS that accepts unverified clients", func(c *Config) {
			c.Insecure, c.TLS = false, memberTLS.Clone()
			c.TLS.ClientAuth = tls.RequestClientCert
		}, "TLS.ClientAuth"},
		{"TLS with a custom transport", func(c *Config) { c.Transport = newMemNet().transport("a") }, "TLS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig()
			tc.edit(&cfg)
			cfg = cfg.withDefaults()
			err := cfg.validate()
			want := "raftlease: invalid config: " + tc.field + ": "
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), want) {
				t.Fatalf("validate = %v, want ErrConfig with %q", err, want)
			}
		})
	}
	cfg := baseConfig().withDefaults()
	if err := cfg.validate(); err != nil {
		t.Fatalf("defaults rejected: %v", err)
	}
	if cfg.TickInterval != 100*time.Millisecond || cfg.ElectionTicks != 10 || cfg.HeartbeatTicks != 1 || cfg.DriftMargin != 100*time.Millisecond {
		t.Fatalf("defaults: %+v", cfg)
	}
	if w := cfg.fenceWindow(); w != 800*time.Millisecond {
		t.Fatalf("default fence window %v, want 800ms", w)
	}
	tlsCfg := baseConfig()
	tlsCfg.Insecure, tlsCfg.TLS = false, memberTLS
	if err := tlsCfg.withDefaults().validate(); err != nil {
		t.Fatalf("mutual TLS with a member certificate rejected: %v", err)
	}
	alone := Config{ID: "a", Peers: map[string]string{"a": "127.0.0.1:1"}, DataDir: "x"}
	if err := alone.withDefaults().validate(); err != nil {
		t.Fatalf("a group of one member needs no TLS, got %v", err)
	}
}

// TestConfigValidationReportsEverything: every broken rule is reported at
// once, and validate changes nothing.
func TestConfigValidationReportsEverything(t *testing.T) {
	cfg := Config{ID: "z", Peers: map[string]string{"a": "", "b": "127.0.0.1:2"}, TickInterval: time.Microsecond, ElectionTicks: 2, DriftMargin: -1}
	cfg = cfg.withDefaults()
	before := cfg
	err := cfg.validate()
	for _, field := range []string{"Peers: must include", "Peers: member \"a\" has an empty address", "DataDir", "TickInterval", "ElectionTicks", "DriftMargin", "TLS"} {
		if err == nil || !strings.Contains(err.Error(), "raftlease: invalid config: "+field) {
			t.Errorf("validate = %v; does not report %s", err, field)
		}
	}
	if !reflect.DeepEqual(before.Peers, cfg.Peers) || before.ID != cfg.ID || before.TickInterval != cfg.TickInterval {
		t.Fatal("validate changed the config")
	}
}

func TestPlainTCPRefused(t *testing.T) {
	// The attack this prevents: over plain TCP a hello's claimed member
	// is taken at its word (TestInsecureHelloIsTakenAtItsWord shows it).
	cfg := baseConfig()
	cfg.Insecure = false
	_, err := Start(t.Context(), cfg)
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "TLS") || !strings.Contains(err.Error(), "Insecure") {
		t.Fatalf("Start of a three-member group over plain TCP = %v, want ErrConfig saying how to configure TLS", err)
	}
	_, err = NewTCPTransport(TCPConfig{ID: "a", Addr: "127.0.0.1:0"})
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "TCPConfig.TLS") {
		t.Fatalf("NewTCPTransport without TLS or Insecure = %v, want ErrConfig naming TCPConfig.TLS", err)
	}
}

func TestRaftIDStable(t *testing.T) {
	// The mapping is part of the on-disk and wire format: pinned.
	for id, want := range map[string]uint64{"a": 0xc817cba33e630690, "member-1": 0x282672e2eb41801} {
		if got := RaftID(id); got != want {
			t.Errorf("RaftID(%q) = %#x, want %#x", id, got, want)
		}
	}
}
