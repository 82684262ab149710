package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/hakit/hakit/dns"
	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/ha"
	"github.com/hakit/hakit/lease"
	"github.com/hakit/hakit/lease/raftlease"
	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/filelog"
	"github.com/hakit/hakit/replicate/filesink"
)

// errCrashed is what a crashed member's sink answers: the process is
// gone, nothing it does reaches anyone any more.
var errCrashed = errors.New("hamirror demo: member crashed")

// demoMember is one in-process member wired exactly like the daemon
// (newDaemon), except that its Raft transport and its sink can be made to
// vanish at once, as they would with kill -9.
type demoMember struct {
	id, raftAddr, dataDir string
	c                     *demoCluster

	tr     *crashTransport
	sink   *crashSink
	node   *ha.Node
	stream *replicate.Stream
	srv    *http.Server
	api    string
	cancel context.CancelFunc
	done   chan error // Node.Run's result, then closed
}

// startMember starts member id on its Raft address, restarting from its
// data directory if that holds a log.
func (c *demoCluster) startMember(id string) (*demoMember, error) {
	m := &demoMember{id: id, raftAddr: c.peers[id], dataDir: filepath.Join(c.dir, "raft-"+id), c: c, done: make(chan error, 1)}
	ln, err := net.Listen("tcp", m.raftAddr)
	if err != nil {
		return nil, fmt.Errorf("member %s: raft listener: %w", id, err)
	}
	tcp, err := raftlease.NewTCPTransport(raftlease.TCPConfig{ID: id, Listener: ln,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Logger: c.logger.With("member", id)})
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("member %s: raft transport: %w", id, err)
	}
	m.tr = &crashTransport{TCPTransport: tcp}
	g, err := raftlease.Start(context.Background(), raftlease.Config{
		ID:            id,
		Peers:         c.peers,
		DataDir:       m.dataDir,
		TickInterval:  c.opts.Tick,
		ElectionTicks: c.opts.ElectionTicks,
		Transport:     m.tr,
		Logger:        c.logger.With("member", id, "component", "raft"),
	})
	if err != nil {
		tcp.Close()
		return nil, fmt.Errorf("member %s: start raft: %w", id, err)
	}
	fs, err := filesink.Open(c.sinkPath)
	if err != nil {
		g.Close()
		return nil, fmt.Errorf("member %s: %w", id, err)
	}
	m.sink = &crashSink{Sink: fs, c: c, id: id}
	m.stream = &replicate.Stream{
		Source:             &filelog.Source{Dir: c.sourceDir, PollInterval: 5 * time.Millisecond},
		Sink:               m.sink,
		Store:              g.Store(),
		Key:                DefaultCheckpointKey,
		CheckpointInterval: 200 * time.Millisecond,
		HeartbeatInterval:  500 * time.Millisecond,
		StopTimeout:        2 * time.Second,
		Logger:             c.logger.With("member", id, "component", "stream"),
	}
	m.node, err = ha.New(ha.Config{
		ID:          id,
		Elector:     g,
		Work:        func(ctx context.Context, t fence.Token) error { return m.stream.Run(ctx, t) },
		Switcher:    &dns.Health{},
		HoldOff:     time.Second,
		StopTimeout: 3 * time.Second,
		Shared:      g.Store(),
		AdminToken:  c.admin.token,
		Forward: func(ctx context.Context, leader lease.Leader, command, to string) error {
			api, ok := c.apiOf(leader.ID)
			if !ok {
				return fmt.Errorf("forward %s: leader %q has no API", command, leader.ID)
			}
			return c.admin.post(ctx, api, command, to)
		},
		OnEvent: func(e ha.Event) { c.noteEvent(id, e) },
		Logger:  c.logger.With("member", id, "component", "ha"),
	})
	if err != nil {
		fs.Close()
		g.Close()
		return nil, fmt.Errorf("member %s: %w", id, err)
	}
	api, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fs.Close()
		g.Close()
		return nil, fmt.Errorf("member %s: api listener: %w", id, err)
	}
	m.api = "http://" + api.Addr().String()
	mux := http.NewServeMux()
	mux.Handle("/", m.node.Handler())
	m.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = m.srv.Serve(api) }()
	c.setAPI(id, m.api)

	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go func() {
		err := m.node.Run(ctx)
		_ = m.srv.Close()
		_ = fs.Close()
		m.done <- err
		close(m.done)
	}()
	return m, nil
}

// crash makes the member vanish without resigning: its Raft transport
// closes (peers see connections reset and hear nothing more) and its sink
// refuses every call, so nothing the member still does in this process can
// reach the other members or the target. Its Node is then stopped in the
// background; its resignation goes nowhere. wait returns when it is gone.
func (m *demoMember) crash() {
	m.tr.crash()
	m.sink.crashed.Store(true)
	_ = m.srv.Close()
	m.cancel()
}

// stop shuts the member down gracefully: drain, final checkpoint, resign.
func (m *demoMember) stop() { m.cancel() }

// wait waits until the member's Node has stopped and returns Run's error.
func (m *demoMember) wait(ctx context.Context) error {
	select {
	case err := <-m.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("member %s did not stop: %w", m.id, ctx.Err())
	}
}

// crashTransport is a real TCP transport that can be cut dead at once.
type crashTransport struct {
	*raftlease.TCPTransport
	dead atomic.Bool
}

func (t *crashTransport) crash() {
	t.dead.Store(true)
	_ = t.TCPTransport.Close()
}

func (t *crashTransport) Send(m *pb.Message) {
	if !t.dead.Load() {
		t.TCPTransport.Send(m)
	}
}

func (t *crashTransport) Start(h raftlease.Handler) error {
	return t.TCPTransport.Start(crashHandler{Handler: h, t: t})
}

type crashHandler struct {
	raftlease.Handler
	t *crashTransport
}

func (h crashHandler) Receive(m *pb.Message) {
	if !h.t.dead.Load() {
		h.Handler.Receive(m)
	}
}

// crashSink is the member's handle on the shared file sink; it reports
// every acknowledged batch to the cluster (for the progress line and the
// timings) and refuses everything once the member has crashed.
type crashSink struct {
	*filesink.Sink
	c       *demoCluster
	id      string
	crashed atomic.Bool
}

func (s *crashSink) Apply(ctx context.Context, t fence.Token, batch []replicate.Record) error {
	if s.crashed.Load() {
		return errCrashed
	}
	if err := s.Sink.Apply(ctx, t, batch); err != nil {
		return err
	}
	s.c.noteApply(s.id, t, len(batch))
	return nil
}

func (s *crashSink) ApplyHeartbeat(ctx context.Context, t fence.Token, hb replicate.Heartbeat) error {
	if s.crashed.Load() {
		return errCrashed
	}
	return s.Sink.ApplyHeartbeat(ctx, t, hb)
}

func (s *crashSink) Position(ctx context.Context) (replicate.Position, error) {
	if s.crashed.Load() {
		return nil, errCrashed
	}
	return s.Sink.Position(ctx)
}
