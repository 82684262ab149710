package raftlease

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestConfigValidation(t *testing.T) {
	base := func() Config {
		return Config{ID: "a", Peers: map[string]string{"a": "127.0.0.1:1", "b": "127.0.0.1:2", "c": "127.0.0.1:3"}, DataDir: "x"}
	}
	for _, tc := range []struct {
		name  string
		edit  func(*Config)
		field string
	}{
		{"no ID", func(c *Config) { c.ID = "" }, "ID"},
		{"self not in peers", func(c *Config) { c.ID = "z" }, "Peers"},
		{"no data dir", func(c *Config) { c.DataDir = "" }, "DataDir"},
		{"empty address", func(c *Config) { c.Peers["b"] = "" }, "Peers"},
		{"tick too short", func(c *Config) { c.TickInterval = time.Microsecond }, "TickInterval"},
		{"election ticks", func(c *Config) { c.ElectionTicks = 2 }, "ElectionTicks"},
		{"election below heartbeat", func(c *Config) { c.ElectionTicks, c.HeartbeatTicks = 5, 5 }, "ElectionTicks"},
		{"drift too large", func(c *Config) { c.DriftMargin = time.Second }, "DriftMargin"},
		{"negative drift", func(c *Config) { c.DriftMargin = -1 }, "DriftMargin"},
		{"joining without peers", func(c *Config) { c.Join, c.Peers = true, nil }, "Peers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base()
			tc.edit(&cfg)
			cfg = cfg.withDefaults()
			err := cfg.validate()
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("validate = %v, want ErrConfig naming %s", err, tc.field)
			}
		})
	}
	cfg := base().withDefaults()
	if err := cfg.validate(); err != nil {
		t.Fatalf("defaults rejected: %v", err)
	}
	if cfg.TickInterval != 100*time.Millisecond || cfg.ElectionTicks != 10 || cfg.HeartbeatTicks != 1 || cfg.DriftMargin != 100*time.Millisecond {
		t.Fatalf("defaults: %+v", cfg)
	}
	if w := cfg.fenceWindow(); w != 800*time.Millisecond {
		t.Fatalf("default fence window %v, want 800ms", w)
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
