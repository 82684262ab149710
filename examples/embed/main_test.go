package main

import (
	"context"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/hakit/hakit/lease/raftlease"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestRunSingleMember runs the README's wiring as a group of one: the
// member becomes active, says so on /primary, and stops cleanly.
func TestRunSingleMember(t *testing.T) {
	dir := t.TempDir()
	listen := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		cfg := raftlease.Config{ID: "a", Peers: map[string]string{"a": freeAddr(t)}, DataDir: filepath.Join(dir, "raft")}
		done <- run(ctx, cfg, filepath.Join(dir, "changes"), filepath.Join(dir, "target.log"), listen)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + listen + "/primary")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the member did not become active: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // polling with a deadline
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after its context ended")
	}
}
