package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"

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
	tcp, err := raftlease.NewTCPTransport(raftlease.TCPConfig{ID: id, Listener: ln, Insecure: true, // one process, loopback
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
		Work:        m.stream.RunTerm,
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

// freeze pauses the member in the middle of a sink write, as a long GC
// pause or SIGSTOP would: its next write is held, and once one is, the
// member goes silent to the group. It returns the held write, or false if
// the member attempted none within the wait. thaw lets it run on.
func (m *demoMember) freeze(wait time.Duration) (heldWrite, bool) {
	held := m.sink.freeze()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case hw := <-held:
		m.tr.frozen.Store(true)
		return hw, true
	case <-t.C:
		m.sink.thaw()
		return heldWrite{}, false
	}
}

func (m *demoMember) thaw() {
	m.tr.frozen.Store(false)
	m.sink.thaw()
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

// crashTransport is a real TCP transport that can be cut dead at once,
// or frozen (every message dropped both ways) and thawed.
type crashTransport struct {
	*raftlease.TCPTransport
	dead   atomic.Bool
	frozen atomic.Bool
}

func (t *crashTransport) silent() bool { return t.dead.Load() || t.frozen.Load() }

func (t *crashTransport) crash() {
	t.dead.Store(true)
	_ = t.TCPTransport.Close()
}

func (t *crashTransport) Send(m *pb.Message) {
	if !t.silent() {
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
	if !h.t.silent() {
		h.Handler.Receive(m)
	}
}

// crashSink is the member's handle on the shared file sink; it reports
// every acknowledged batch to the cluster (for the progress line and the
// timings) and refuses everything once the member has crashed. While the
// member is frozen its writes are held, as a process paused in the middle
// of a write would hold them, and go out when it is thawed.
type crashSink struct {
	*filesink.Sink
	c       *demoCluster
	id      string
	crashed atomic.Bool

	mu   sync.Mutex
	gate chan struct{} // non-nil while frozen; closed by thaw
	held chan heldWrite
}

// heldWrite describes a write held while its member was frozen.
type heldWrite struct {
	Token   fence.Token
	Records int
}

// freeze holds every later write until thaw; the first one held is
// reported on the returned channel.
func (s *crashSink) freeze() <-chan heldWrite {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gate, s.held = make(chan struct{}), make(chan heldWrite, 1)
	return s.held
}

func (s *crashSink) thaw() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gate != nil {
		close(s.gate)
		s.gate = nil
	}
}

// hold blocks while the member is frozen and returns ctx, or, for a
// write it held, a ctx that cannot be cancelled: like a paused process,
// the write goes out when the member runs again, whatever happened to its
// term meanwhile.
func (s *crashSink) hold(ctx context.Context, t fence.Token, n int) context.Context {
	s.mu.Lock()
	gate, held := s.gate, s.held
	s.mu.Unlock()
	if gate == nil {
		return ctx
	}
	select {
	case held <- heldWrite{Token: t, Records: n}:
	default:
	}
	<-gate
	return context.WithoutCancel(ctx)
}

func (s *crashSink) Apply(ctx context.Context, t fence.Token, batch []replicate.Record) error {
	if s.crashed.Load() {
		return errCrashed
	}
	ctx = s.hold(ctx, t, len(batch))
	if err := s.Sink.Apply(ctx, t, batch); err != nil {
		s.c.noteRefused(s.id, t, len(batch), err)
		return err
	}
	s.c.noteApply(s.id, t, len(batch))
	return nil
}

func (s *crashSink) ApplyHeartbeat(ctx context.Context, t fence.Token, hb replicate.Heartbeat) error {
	if s.crashed.Load() {
		return errCrashed
	}
	ctx = s.hold(ctx, t, 0)
	if err := s.Sink.ApplyHeartbeat(ctx, t, hb); err != nil {
		s.c.noteRefused(s.id, t, 0, err)
		return err
	}
	return nil
}

func (s *crashSink) Position(ctx context.Context) (replicate.Position, error) {
	if s.crashed.Load() {
		return nil, errCrashed
	}
	return s.Sink.Position(ctx)
}
