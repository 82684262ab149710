package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/filelog"
	"github.com/hakit/hakit/replicate/pgcdc"
	"github.com/hakit/hakit/replicate/pgsink"
)

// sourceHandle is the configured source.
type sourceHandle struct {
	source replicate.Source
	pg     *pgcdc.Source // kind "postgres", for its metrics
}

// openSource builds the source of its kind. Nothing connects yet: the
// PostgreSQL source connects when the active member opens it.
func openSource(c SourceConfig, logger *slog.Logger) (*sourceHandle, error) {
	if c.Kind != SourcePostgres {
		return &sourceHandle{source: &filelog.Source{Dir: c.Dir, PollInterval: c.PollInterval.D()}}, nil
	}
	p := c.Postgres
	dsn, err := readDSN("source.postgres.dsn_file", p.DSNFile)
	if err != nil {
		return nil, err
	}
	s, err := pgcdc.New(pgcdc.Config{
		ConnString: dsn, Slot: p.Slot, Publication: p.Publication,
		CreateSlot: p.CreateSlot, InitialLoad: p.InitialLoad,
		HeartbeatTable: p.HeartbeatTable, HeartbeatInterval: p.HeartbeatInterval.D(),
		SlotWait: p.SlotWait.D(), MaxTransactionBytes: p.MaxTransaction,
		Logger: logger.With("component", "pgcdc"),
	})
	if err != nil {
		return nil, fmt.Errorf("%w: source.postgres: %v", ErrConfig, err)
	}
	return &sourceHandle{source: s, pg: s}, nil
}

// readDSN reads a connection string from a file; the error names the
// field and the file, never the contents.
func readDSN(field, file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %v", ErrConfig, field, err)
	}
	dsn := strings.TrimSpace(string(b))
	if dsn == "" {
		return "", fmt.Errorf("%w: %s: %s is empty", ErrConfig, field, file)
	}
	return dsn, nil
}

// openPGSink opens the PostgreSQL apply sink and creates its position
// table if missing.
func openPGSink(ctx context.Context, p *PostgresConfig) (*sinkHandle, error) {
	dsn, err := readDSN("sink.postgres.dsn_file", p.DSNFile)
	if err != nil {
		return nil, err
	}
	s, err := pgsink.New(pgsink.Config{ConnString: dsn, Stream: p.Stream, PositionTable: p.PositionTable, HeartbeatTable: p.HeartbeatTable})
	if err != nil {
		return nil, fmt.Errorf("%w: sink.postgres: %v", ErrConfig, err)
	}
	setupCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := s.Setup(setupCtx); err != nil {
		return nil, errors.Join(fmt.Errorf("hamirror: sink.postgres: create the position table: %w", err), s.Close())
	}
	return &sinkHandle{sink: s, pg: s, close: s.Close, token: func(ctx context.Context) (fence.Token, error) {
		row, _, err := s.Row(ctx)
		return row.Token, err
	}}, nil
}

// registerPostgresMetrics exposes the PostgreSQL source's and sink's
// counters, if those kinds are configured.
func registerPostgresMetrics(reg prometheus.Registerer, src *sourceHandle, tgt *sinkHandle) {
	if s := src.pg; s != nil {
		reg.MustRegister(
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "hamirror_pg_source_transactions_total", Help: "Source transactions received from the replication slot by this member."},
				func() float64 { return float64(s.Stats().Transactions) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "hamirror_pg_source_flushed_lsn", Help: "The position last reported to the source as durable (the slot may release WAL before it)."},
				func() float64 { return float64(s.Stats().Flushed) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "hamirror_pg_source_heartbeats_total", Help: "Heartbeat rows this member wrote to the source."},
				func() float64 { return float64(s.Stats().Heartbeats) }),
		)
	}
	if k := tgt.pg; k != nil {
		reg.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "hamirror_pg_latency_seconds", Help: "End-to-end latency of the newest heartbeat applied: source commit to target commit."},
				func() float64 { return k.Stats().Latency.Seconds() }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "hamirror_pg_changes_total", Help: "Row changes this member applied to the target."},
				func() float64 { return float64(k.Stats().Changes) }),
		)
	}
}
