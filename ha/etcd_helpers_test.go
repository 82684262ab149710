package ha_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hakit/hakit/ha"
	"github.com/hakit/hakit/lease"
	"github.com/hakit/hakit/lease/etcdlease"
	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/memrepl"
	"github.com/hakit/hakit/storage/etcdstore"
	"github.com/hakit/hakit/storage/etcdstore/etcdtest"
)

// etcdMember is a Node whose elector and checkpoint store reach a real etcd
// through a fault-injecting proxy of its own.
type etcdMember struct {
	id    string
	proxy *etcdtest.Proxy
	node  *ha.Node
}

// startEtcdMember starts a Node for member id in the election under prefix
// on srv, whose work runs a Stream from src into sink with its checkpoint
// in etcd; edit, if set, adjusts the Config. The Node stops at cleanup.
func startEtcdMember(t *testing.T, srv *etcdtest.Server, prefix, id string, src replicate.Source, sink replicate.Sink, edit func(*ha.Config)) *etcdMember {
	t.Helper()
	m := &etcdMember{id: id, proxy: etcdtest.NewProxy(t, srv)}
	cli := m.proxy.Client(t)
	el, err := etcdlease.New(etcdlease.Config{Client: cli, ID: id, Prefix: prefix + "/election", TTL: 2 * time.Second, DriftMargin: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	store := etcdstore.New(cli, prefix+"/state/")
	cfg := ha.Config{
		ID: id, Elector: el, HoldOff: 500 * time.Millisecond, StopTimeout: 3 * time.Second,
		Work: func(ctx context.Context, term lease.Term) error {
			tok := term.Token()
			s := &replicate.Stream{Source: src, Sink: sink, Store: store, Key: "checkpoint",
				MaxRecords: 50, CheckpointRecords: 200, CheckpointInterval: 100 * time.Millisecond,
				HeartbeatInterval: -1, StopTimeout: time.Second}
			return s.Run(ctx, tok)
		},
	}
	if edit != nil {
		edit(&cfg)
	}
	if m.node, err = ha.New(cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.node.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s: Run: %v", id, err)
		}
	})
	return m
}

// produce appends total records to src, ten per millisecond, and returns a
// channel closed when it is done.
func produce(src *memrepl.Source, total int) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for i := 0; i < total; i++ {
			src.Append([]byte(fmt.Sprintf("record %05d", i)))
			if i%10 == 9 {
				<-tick.C
			}
		}
	}()
	return done
}

// checkTargetEqualsSource waits for the sink to hold total records and
// checks that they are the source's, once each and in order.
func checkTargetEqualsSource(t *testing.T, src *memrepl.Source, sink *memrepl.DurableSink, total int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := sink.WaitLen(ctx, total); err != nil {
		t.Fatalf("target has %d of %d records: %v", sink.Len(), total, err)
	}
	got, want := sink.Records(), src.Records()
	if len(got) != len(want) {
		t.Fatalf("target has %d records, source %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i].Data, want[i].Data) {
			t.Fatalf("record %d: target %q, source %q", i, got[i].Data, want[i].Data)
		}
	}
}
