package pgsink

import (
	"sync"
	"time"

	"github.com/hakit/hakit/replicate/pgcdc"
)

// Stats are a Sink's counters.
type Stats struct {
	Batches uint64    // transactions committed on the target with changes or a position
	Changes uint64    // row changes applied
	Applied pgcdc.LSN // the LSN of the last position stored
	// Latency is the end-to-end latency of the newest heartbeat applied:
	// from its commit on the source (the source server's clock) to the
	// commit on the target (this process's clock). Zero until one is.
	Latency time.Duration
	// HeartbeatAt is the source commit time of that heartbeat, and
	// Heartbeats how many were applied.
	HeartbeatAt time.Time
	Heartbeats  uint64
}

type statsBox struct {
	mu sync.Mutex
	s  Stats
}

// Stats returns a snapshot of the counters.
func (s *Sink) Stats() Stats {
	s.stats.mu.Lock()
	defer s.stats.mu.Unlock()
	return s.stats.s
}

func (s *Sink) noteApplied(r result) {
	now := time.Now()
	s.stats.mu.Lock()
	defer s.stats.mu.Unlock()
	st := &s.stats.s
	st.Batches++
	st.Changes += uint64(r.changes)
	if r.lastLSN != 0 {
		st.Applied = r.lastLSN
	}
	for _, at := range r.heartbeats {
		st.Heartbeats++
		if at.After(st.HeartbeatAt) {
			st.HeartbeatAt, st.Latency = at, now.Sub(at)
		}
	}
}
