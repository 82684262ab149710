package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hakit/hakit/lease/raftlease"
	"github.com/hakit/hakit/replicate/filelog"
)

// TestDaemonReplaceDisk runs the README's procedure: a member restarted
// with an empty raft.data_dir exits with the error naming the procedure
// (it neither bootstraps a second log nor crashes); "hamirror member
// remove", an empty directory, "hamirror member add" and a restart bring
// it back with the checkpoints.
func TestDaemonReplaceDisk(t *testing.T) {
	cfgs := daemonConfigs(t, 3, "raft", nil)
	byID := map[string]*Config{}
	var ds []*testDaemon
	for _, c := range cfgs {
		byID[c.ID] = c
		ds = append(ds, startDaemon(t, c))
	}
	w, err := filelog.OpenWriter(cfgs[0].Source.Dir, filelog.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	appendRecords(t, w, 0, 100)
	waitTarget(t, fileTarget(cfgs[0].Sink.Path), 100)
	active := activeOf(ds)
	if active == nil {
		t.Fatal("no member is active")
	}
	var victim *testDaemon
	for _, d := range ds {
		if d != active {
			victim = d
			break
		}
	}
	vc := byID[victim.id]
	victim.stop(t)
	if err := os.RemoveAll(vc.Raft.DataDir); err != nil {
		t.Fatal(err)
	}

	// Restarted on an empty directory, it exits with the procedure.
	d, err := newDaemon(context.Background(), vc, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("member %s: %v", vc.ID, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = d.run(ctx)
	if !errors.Is(err, raftlease.ErrWipedMember) || !strings.Contains(err.Error(), "RemoveMember") {
		t.Fatalf("the member with the wiped disk exited with %v, want raftlease.ErrWipedMember", err)
	}
	t.Logf("refused: %v", err)
	appendRecords(t, w, 100, 150) // the other two serve on
	waitTarget(t, fileTarget(cfgs[0].Sink.Path), 150)

	tokenFile := cfgs[0].AdminTokenFile
	var members []string
	for _, c := range cfgs {
		members = append(members, c.ID+"="+c.Members[c.ID].API)
	}
	conn := []string{"-members", strings.Join(members, ","), "-token-file", tokenFile, "-timeout", "20s"}
	for _, args := range [][]string{
		append([]string{"member", "remove", "-id", vc.ID}, conn...),
		append([]string{"member", "add", "-id", vc.ID, "-raft", vc.Members[vc.ID].Raft}, conn...),
	} {
		var out strings.Builder
		if code := runMain(ctx, args, &out, &out); code != 0 {
			t.Fatalf("hamirror %s exited %d:\n%s", strings.Join(args[:2], " "), code, out.String())
		}
	}
	if err := os.RemoveAll(vc.Raft.DataDir); err != nil {
		t.Fatal(err)
	}
	back := startDaemon(t, vc)
	waitFor(t, "the checkpoint on the member that is back", func() bool {
		_, err := back.d.backend.store.Get(ctx, vc.Stream.CheckpointKey)
		return err == nil
	})
	appendRecords(t, w, 150, 200)
	waitTarget(t, fileTarget(cfgs[0].Sink.Path), 200)
}
