package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hakit/hakit/dns"
	"github.com/hakit/hakit/ha"
	"github.com/hakit/hakit/replicate"
)

// daemon is one running member: the Node, its Stream and its HTTP API.
type daemon struct {
	cfg     *Config
	logger  *slog.Logger
	node    *ha.Node
	stream  *replicate.Stream
	target  *sinkHandle
	backend *backend
	handler http.Handler
	tls     *tls.Config
}

// newDaemon wires a member from a validated config. On error everything
// it started is released. Nothing campaigns until run.
func newDaemon(ctx context.Context, c *Config, logger *slog.Logger) (d *daemon, err error) {
	token, err := adminToken(c.AdminTokenFile)
	if err != nil {
		return nil, err
	}
	if token == "" {
		logger.Warn("no admin token (admin_token_file or $" + EnvAdminToken + "): switchover, pause, resume and approve are refused")
	}
	for _, w := range c.warnings() {
		logger.Warn("hamirror: " + w)
	}
	srvTLS, err := serverTLS("tls", c.TLS)
	if err != nil {
		return nil, err
	}
	cliTLS, err := clientTLS("tls", c.TLS)
	if err != nil {
		return nil, err
	}
	src, err := openSource(c.Source, logger)
	if err != nil {
		return nil, err
	}
	tgt, err := openTarget(ctx, c.Sink)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = tgt.close()
		}
	}()
	b, err := openBackend(ctx, c, logger)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = b.close()
		}
	}()

	stream := &replicate.Stream{
		Source:             src.source,
		Sink:               tgt.sink,
		Store:              b.store,
		Key:                c.Stream.CheckpointKey,
		MaxRecords:         c.Stream.MaxRecords,
		CheckpointRecords:  c.Stream.CheckpointRecords,
		CheckpointInterval: c.Stream.CheckpointInterval.D(),
		HeartbeatInterval:  c.Stream.HeartbeatInterval.D(),
		Logger:             logger.With("component", "stream"),
	}
	if err := stream.Validate(); err != nil {
		return nil, fmt.Errorf("%w: stream: %v", ErrConfig, err)
	}
	health := &dns.Health{}
	switcher, err := buildSwitchers(c, health, logger)
	if err != nil {
		return nil, err
	}
	checks, err := buildChecks(c.HA.Checks)
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	node, err := ha.New(ha.Config{
		ID:              c.ID,
		Elector:         b.elector,
		Work:            stream.RunTerm,
		Switcher:        switcher,
		PromoteDelay:    c.HA.PromoteDelay.D(),
		StopTimeout:     c.HA.StopTimeout.D(),
		Checks:          checks,
		HoldOff:         c.HA.HoldOff.D(),
		RequireApproval: c.HA.RequireApproval,
		Shared:          b.store,
		AdminToken:      token,
		// Both electors advertise members.<ID>.api, so the Node's own
		// Forward reaches the active member (sending the token only
		// over https or on loopback).
		AdminClient: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: cliTLS}},
		Logger:      logger.With("component", "ha"),
		Registerer:  reg,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: ha: %v", ErrConfig, err)
	}
	registerStreamMetrics(reg, stream)
	registerPostgresMetrics(reg, src, tgt)

	mux := http.NewServeMux()
	mux.Handle("/", node.Handler())
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.Handle("GET /replication", replicationHandler(node, stream, tgt.token))
	mux.Handle("/lb", health)
	if g, ok := b.elector.(raftMembers); ok {
		mux.Handle("/raft/", membershipHandler(g, token))
	}
	return &daemon{cfg: c, logger: logger, node: node, stream: stream, target: tgt, backend: b, handler: mux, tls: srvTLS}, nil
}

// Limits of the HTTP API's server: a client that sends slowly, reads
// slowly, idles or sends huge headers cannot hold a connection or memory
// for long. No handler streams, and the slowest (a forwarded admin
// command, which waits for the active member) is bounded by the admin
// client's 30 s, below WriteTimeout.
const (
	httpReadHeaderTimeout = 10 * time.Second
	httpReadTimeout       = 30 * time.Second
	httpWriteTimeout      = 60 * time.Second
	httpIdleTimeout       = 2 * time.Minute
	httpMaxHeaderBytes    = 64 << 10
)

// newHTTPServer returns the API's server with the limits above.
func newHTTPServer(h http.Handler, tlsc *tls.Config, logger *slog.Logger) *http.Server {
	return &http.Server{Handler: h, TLSConfig: tlsc, ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		ReadHeaderTimeout: httpReadHeaderTimeout, ReadTimeout: httpReadTimeout, WriteTimeout: httpWriteTimeout,
		IdleTimeout: httpIdleTimeout, MaxHeaderBytes: httpMaxHeaderBytes}
}

// run serves the API and runs the Node until ctx ends, then shuts down in
// order: the Node drains the work (the Stream writes its final
// checkpoint), demotes the switchers and resigns, so a successor takes
// over within about one round trip; only then does the API stop, so the
// load balancer sees this member go standby before it disappears.
func (d *daemon) run(ctx context.Context) error {
	ln, err := net.Listen("tcp", d.cfg.Listen)
	if err != nil {
		_ = d.close()
		return fmt.Errorf("hamirror: listen: %w", err)
	}
	srv := newHTTPServer(d.handler, d.tls, d.logger)
	srvErr := make(chan error, 1)
	go func() {
		if d.tls != nil {
			srvErr <- srv.ServeTLS(ln, "", "")
		} else {
			srvErr <- srv.Serve(ln)
		}
	}()
	d.logger.Info("hamirror started", "member", d.cfg.ID, "backend", d.cfg.Backend, "api", ln.Addr().String(), "tls", d.tls != nil)

	nodeCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	nodeErr := make(chan error, 1)
	go func() { nodeErr <- d.node.Run(nodeCtx) }()

	var runErr error
	select {
	case runErr = <-nodeErr:
	case err := <-srvErr:
		// The API is the load balancer's view of this member: without
		// it, step down rather than run unseen.
		runErr = fmt.Errorf("hamirror: http server: %w", err)
		cancel()
		<-nodeErr
	case <-d.backend.stopped: // nil (never ready) for etcd
		// The Raft member stopped on its own (a failed disk, a wiped
		// data directory): say why and exit rather than campaign on.
		runErr = d.backend.stopErr()
		cancel()
		<-nodeErr
	}
	d.logger.Info("hamirror stopping", "member", d.cfg.ID, "records", d.stream.Stats().Records)
	shutCtx, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	if err := srv.Shutdown(shutCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		runErr = errors.Join(runErr, err)
	}
	return errors.Join(runErr, d.close())
}

func (d *daemon) close() error {
	return errors.Join(d.backend.close(), d.target.close())
}

// buildChecks turns the configured checks into ha.Checks.
func buildChecks(cs []CheckConfig) ([]ha.Check, error) {
	var out []ha.Check
	for _, c := range cs {
		ch := ha.Check{Name: c.Name, Interval: c.Interval.D(), Rise: c.Rise, Fall: c.Fall}
		switch {
		case c.TCP != "":
			ch.Func = ha.DialCheck(c.TCP)
		case c.PIDFile != "":
			ch.Func = ha.ProcessCheck(c.PIDFile)
		default:
			return nil, fmt.Errorf("%w: ha.checks: %q has neither tcp nor pid_file", ErrConfig, c.Name)
		}
		out = append(out, ch)
	}
	return out, nil
}

// newLogger returns the structured logger on w.
func newLogger(c LogConfig, w *os.File) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level)) // validated
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
