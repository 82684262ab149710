package raftlease

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/hakit/hakit/lease/raftlease/raftcert"
)

// TestGroupTLS runs a group whose members authenticate each other with
// member certificates from raftcert, over the default transport.
func TestGroupTLS(t *testing.T) {
	ca, err := raftcert.NewCA("raftlease test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, peers: map[string]string{}, dirs: map[string]string{}, lns: map[string]net.Listener{},
		nets: map[string]*partTransport{}, groups: map[string]*Group{}}
	t.Cleanup(c.closeAll)
	for _, id := range []string{"a", "b", "c"} {
		c.addSlot(id)
		c.lns[id].Close() // the group listens itself
	}
	for _, id := range c.ids {
		cfg := c.config(id)
		if cfg.TLS, err = ca.MemberConfig(id); err != nil {
			t.Fatal(err)
		}
		g, err := Start(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		c.groups[id] = g
	}
	ctx := testCtx(t, 20*time.Second)
	term, err := c.groups["b"].Campaign(ctx)
	if err != nil {
		t.Fatal(err)
	}
	acked := writeKeys(t, c.groups["b"], term.Token(), "tls", 5)
	for _, g := range c.groups {
		checkKeys(t, g, acked)
	}
}
