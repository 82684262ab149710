package main

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/ha"
	"github.com/hakit/hakit/replicate"
)

// registerStreamMetrics exposes the Stream's counters on reg. They are
// read at scrape time, so nothing in the replication path waits on a
// metric. The Node registers its own (role, token, transitions).
func registerStreamMetrics(reg prometheus.Registerer, s *replicate.Stream) {
	stat := func(f func(replicate.Stats) float64) func() float64 {
		return func() float64 { return f(s.Stats()) }
	}
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "hamirror_records_total", Help: "Records the sink acknowledged on this member.",
		}, stat(func(st replicate.Stats) float64 { return float64(st.Records) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "hamirror_bytes_total", Help: "Record bytes the sink acknowledged on this member.",
		}, stat(func(st replicate.Stats) float64 { return float64(st.Bytes) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "hamirror_checkpoints_total", Help: "Checkpoints committed to the fenced store by this member.",
		}, stat(func(st replicate.Stats) float64 { return float64(st.Checkpoints) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "hamirror_lag_seconds", Help: "Time from reading the newest acknowledged batch or heartbeat to the sink acknowledging it.",
		}, stat(func(st replicate.Stats) float64 { return st.Lag.Seconds() })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "hamirror_last_checkpoint_timestamp_seconds", Help: "When the newest checkpoint was taken (0: none).",
		}, stat(func(st replicate.Stats) float64 {
			if st.LastCheckpoint.IsZero() {
				return 0
			}
			return float64(st.LastCheckpoint.UnixNano()) / 1e9
		})),
	)
}

// replicationHandler serves GET /replication: this member's Stream
// counters and the sink's committed token, as JSON (replicationStatus).
func replicationHandler(node *ha.Node, s *replicate.Stream, sinkToken func(context.Context) (fence.Token, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := s.Stats()
		out := replicationStatus{
			Active:      node.Status().Role == ha.RoleActive,
			Records:     st.Records,
			Checkpoints: st.Checkpoints,
			LagSeconds:  st.Lag.Seconds(),
		}
		if !st.LastCheckpoint.IsZero() {
			out.LastCheckpoint = st.LastCheckpoint.UTC().Format(time.RFC3339Nano)
		}
		if t, err := sinkToken(r.Context()); err == nil {
			out.SinkToken = t
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	})
}
