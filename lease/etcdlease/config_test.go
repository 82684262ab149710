package etcdlease

import (
	"errors"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestConfigValidation(t *testing.T) {
	client := &clientv3.Client{} // never used: New makes no request
	ok := Config{Client: client, ID: "a"}
	tests := []struct {
		name   string
		change func(*Config)
		want   string // substring of the error; "" means valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"no client", func(c *Config) { c.Client = nil }, "Client: is required"},
		{"no ID", func(c *Config) { c.ID = "" }, "ID: must not be empty"},
		{"long ID", func(c *Config) { c.ID = strings.Repeat("x", MaxIDLen+1) }, "ID: has 257 bytes"},
		{"bad UTF-8 ID", func(c *Config) { c.ID = "\xff" }, "not valid UTF-8"},
		{"long Addr", func(c *Config) { c.Addr = strings.Repeat("x", MaxAddrLen+1) }, "Addr: has"},
		{"TTL below 1s", func(c *Config) { c.TTL = 500 * time.Millisecond }, "below the 1s minimum"},
		{"negative TTL", func(c *Config) { c.TTL = -time.Second }, "below the 1s minimum"},
		{"fractional TTL", func(c *Config) { c.TTL = 1500 * time.Millisecond }, "whole number of seconds"},
		{"negative margin", func(c *Config) { c.DriftMargin = -time.Millisecond }, "DriftMargin: -1ms is negative"},
		{"margin above TTL/4", func(c *Config) { c.TTL, c.DriftMargin = 4*time.Second, 1001*time.Millisecond }, "more than TTL/4"},
		{"margin at TTL/4", func(c *Config) { c.TTL, c.DriftMargin = 4*time.Second, time.Second }, ""},
		{"1s TTL", func(c *Config) { c.TTL = time.Second }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.change(&c)
			e, err := New(c)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				e.Close()
				return
			}
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "etcdlease: invalid config: ") {
				t.Fatalf("New: got %v, want an ErrConfig containing %q", err, tt.want)
			}
		})
	}
}

// Every broken rule is reported, and the old name still matches.
func TestConfigReportsEveryRule(t *testing.T) {
	_, err := New(Config{ID: "\xff", TTL: 1500 * time.Millisecond, DriftMargin: -1})
	for _, field := range []string{"Client", "ID", "TTL", "DriftMargin"} {
		if err == nil || !strings.Contains(err.Error(), "etcdlease: invalid config: "+field+": ") {
			t.Errorf("New with four broken fields: %v; want it to name %s", err, field)
		}
	}
	if !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("%v does not match the deprecated ErrInvalidConfig", err)
	}
}

func TestConfigDefaults(t *testing.T) {
	e, err := New(Config{Client: &clientv3.Client{}, ID: "a", Prefix: "svc"})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	c := e.Config()
	if c.TTL != DefaultTTL || c.DriftMargin != 500*time.Millisecond || c.Prefix != "svc/" || c.Logger == nil || c.Clock == nil {
		t.Fatalf("defaults not applied: %+v", c)
	}
	e2, err := New(Config{Client: &clientv3.Client{}, ID: "a"})
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	if e2.Config().Prefix != DefaultPrefix {
		t.Fatalf("prefix %q, want %q", e2.Config().Prefix, DefaultPrefix)
	}
}

func TestDefaultDriftMargin(t *testing.T) {
	for ttl, want := range map[time.Duration]time.Duration{
		time.Second:      250 * time.Millisecond, // TTL/4, the most allowed
		2 * time.Second:  500 * time.Millisecond,
		5 * time.Second:  500 * time.Millisecond,
		10 * time.Second: time.Second, // TTL/10
	} {
		if got := DefaultDriftMargin(ttl); got != want {
			t.Errorf("DefaultDriftMargin(%v) = %v, want %v", ttl, got, want)
		}
		c := Config{Client: &clientv3.Client{}, ID: "a", TTL: ttl}.withDefaults()
		if err := c.validate(); err != nil {
			t.Errorf("TTL %v with the default margin: %v", ttl, err)
		}
	}
}
