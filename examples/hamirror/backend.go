package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/hakit/hakit/lease"
	"github.com/hakit/hakit/lease/etcdlease"
	"github.com/hakit/hakit/lease/raftlease"
	"github.com/hakit/hakit/storage"
	"github.com/hakit/hakit/storage/etcdstore"
)

// backend is an elector and the fenced store the checkpoints go to, both
// from one coordination service, so that the term's token and the store's
// fence count in the same sequence.
type backend struct {
	elector lease.Elector
	store   storage.Store
	// close releases what the Node does not: the Node closes the elector
	// when Run returns, then close runs. Safe to call after the elector
	// was closed, and when it never was.
	close func() error
	// stopped, if set, is closed when the backend stops on its own;
	// stopErr then says why (nil after close).
	stopped <-chan struct{}
	stopErr func() error
}

// openBackend starts the configured backend. For "raft" this starts this
// member of the embedded group (it runs from here on: the group needs a
// majority of the members started to elect anyone); for "etcd" it
// creates a client, which connects lazily.
func openBackend(ctx context.Context, c *Config, logger *slog.Logger) (*backend, error) {
	switch c.Backend {
	case "raft":
		return openRaft(ctx, c, logger)
	case "etcd":
		return openEtcd(c, logger)
	}
	return nil, fmt.Errorf("%w: backend: unknown %q", ErrConfig, c.Backend)
}

func openRaft(ctx context.Context, c *Config, logger *slog.Logger) (*backend, error) {
	tlsc, err := mutualTLS("raft.tls", c.Raft.TLS)
	if err != nil {
		return nil, err
	}
	peers := make(map[string]string, len(c.Members))
	for id, m := range c.Members {
		peers[id] = m.Raft
	}
	g, err := raftlease.Start(ctx, raftlease.Config{
		ID:            c.ID,
		Peers:         peers,
		DataDir:       c.Raft.DataDir,
		APIAddr:       c.Members[c.ID].API,
		TickInterval:  c.Raft.TickInterval.D(),
		ElectionTicks: c.Raft.ElectionTicks,
		DriftMargin:   c.Raft.DriftMargin.D(),
		TLS:           tlsc,
		Insecure:      c.Raft.Insecure,
		Logger:        logger.With("component", "raft"),
	})
	if err != nil {
		return nil, fmt.Errorf("hamirror: start raft member %s (data dir %s): %w", c.ID, c.Raft.DataDir, err)
	}
	return &backend{elector: g, store: g.Store(), close: g.Close, stopped: g.Stopped(), stopErr: g.Err}, nil
}

func openEtcd(c *Config, logger *slog.Logger) (*backend, error) {
	tlsc, err := clientTLS("etcd.tls", c.Etcd.TLS)
	if err != nil {
		return nil, err
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   c.Etcd.Endpoints,
		DialTimeout: c.Etcd.DialTimeout.D(),
		TLS:         tlsc,
		Logger:      zap.NewNop(), // the client's own logs would bypass slog
	})
	if err != nil {
		return nil, fmt.Errorf("hamirror: etcd client for %v: %w", c.Etcd.Endpoints, err)
	}
	el, err := etcdlease.New(etcdlease.Config{
		Client: cli,
		ID:     c.ID,
		Addr:   c.Members[c.ID].API,
		Prefix: c.Etcd.Prefix + "election/",
		TTL:    c.Etcd.TTL.D(),
		Logger: logger.With("component", "etcdlease"),
	})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("hamirror: etcd elector: %w", err), cli.Close())
	}
	// etcdstore.Store is a lease.TermBinder: the Stream (RunTerm) and the
	// Node's maintenance flag bind their writes to the term, so they fail
	// as soon as its lease is gone.
	store := etcdstore.New(cli, c.Etcd.Prefix+"store/")
	return &backend{elector: el, store: store, close: func() error {
		// Closing twice is harmless: the Node closed it already after Run.
		return errors.Join(el.Close(), cli.Close())
	}}, nil
}
