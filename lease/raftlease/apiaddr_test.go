package raftlease

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

// lease.Leader.Addr is the holder's API address (Config.APIAddr) on every
// member, not its Raft transport address: it is where a standby forwards
// operator commands, and posting them to the Raft port fails.
func TestLeaderAddrIsTheAPIAddr(t *testing.T) {
	api := func(id string) string { return "https://" + id + ".example:8443" }
	c := newCluster(t, 3, func(cfg *Config) { cfg.APIAddr = api(cfg.ID) })
	ctx := testCtx(t, 10*time.Second)
	term, err := c.groups["b"].Campaign(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range c.ids {
		deadline := time.Now().Add(5 * time.Second)
		for {
			l, err := c.groups[id].Leader(ctx)
			if err == nil && l.ID == "b" && l.Token == term.Token() && l.Addr == api("b") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("member %s: Leader = %+v, %v; want b at %s", id, l, err, api("b"))
			}
			time.Sleep(10 * time.Millisecond) // polling with a deadline
		}
	}
	// Observers get it too.
	obs := c.groups["a"].Observe(ctx)
	if l := <-obs; l.Addr != api("b") {
		t.Fatalf("Observe on a: %+v, want Addr %s", l, api("b"))
	}
}

func TestAPIAddrValidation(t *testing.T) {
	base := Config{ID: "a", Peers: map[string]string{"a": "127.0.0.1:1"}, DataDir: "x"}
	for _, ok := range []string{"", "10.0.0.1:8080", "http://10.0.0.1:8080", "https://api.example/hakit/"} {
		cfg := base
		cfg.APIAddr = ok
		cfg = cfg.withDefaults()
		if err := cfg.validate(); err != nil {
			t.Errorf("APIAddr %q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"ftp://x/", "http://", "no-port", strings.Repeat("a", 2000) + ":1"} {
		cfg := base
		cfg.APIAddr = bad
		cfg = cfg.withDefaults()
		err := cfg.validate()
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "APIAddr") {
			t.Errorf("APIAddr %.40q: %v, want ErrConfig naming APIAddr", bad, err)
		}
	}
}

// The holder's address survives a snapshot, and so does its absence.
func TestSnapshotKeepsHolderAddr(t *testing.T) {
	s := sampleFSM()
	for _, addr := range []string{"", "https://m9:8443"} {
		s.apply(9, command{kind: opHolder, member: 9, term: s.holder.term + 1, addr: addr})
		b := s.encode()
		if b[4] != snapshotFormat {
			t.Fatalf("format %d, want %d", b[4], snapshotFormat)
		}
		got, err := decodeFSM(b)
		if err != nil {
			t.Fatal(err)
		}
		if got.holder != s.holder || !bytes.Equal(got.encode(), b) {
			t.Fatalf("holder after a snapshot round trip: %+v, want %+v", got.holder, s.holder)
		}
	}
}
