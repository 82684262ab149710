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
		{"no client", func(c *Config) { c.Client = nil }, "Client is nil"},
		{"no ID", func(c *Config) { c.ID = "" }, "ID is empty"},
		{"long ID", func(c *Config) { c.ID = strings.Repeat("x", MaxIDLen+1) }, "ID has 257 bytes"},
		{"bad UTF-8 ID", func(c *Config) { c.ID = "\xff" }, "not valid UTF-8"},
		{"long Addr", func(c *Config) { c.Addr = strings.Repeat("x", MaxAddrLen+1) }, "Addr has"},
		{"TTL below 1s", func(c *Config) { c.TTL = 500 * time.Millisecond }, "below the 1s minimum"},
		{"negative TTL", func(c *Config) { c.TTL = -time.Second }, "below the 1s minimum"},
		{"fractional TTL", func(c *Config) { c.TTL = 1500 * time.Millisecond }, "whole number of seconds"},
		{"negative margin", func(c *Config) { c.DriftMargin = -time.Millisecond }, "DriftMargin -1ms is negative"},
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
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New: got %v, want an ErrInvalidConfig containing %q", err, tt.want)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	e, err := New(Config{Client: &clientv3.Client{}, ID: "a", Prefix: "svc"})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	c := e.Config()
	if c.TTL != DefaultTTL || c.DriftMargin != DefaultTTL/10 || c.Prefix != "svc/" || c.Logger == nil || c.Clock == nil {
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
