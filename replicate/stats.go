package replicate

import (
	"sync"
	"time"
)

// Stats is a snapshot of a Stream's counters, cumulative over every Run of
// the Stream value.
type Stats struct {
	Records     uint64 // records the Sink acknowledged
	Bytes       uint64 // sum of len(Data) of those records
	Batches     uint64 // successful Sink.Apply calls
	Heartbeats  uint64 // heartbeats sent through the pipeline
	Checkpoints uint64 // checkpoints committed to the Store
	Resumes     uint64 // Runs that opened the Source

	// LastCheckpoint is when the newest committed checkpoint was taken
	// (zero if none), and LastCheckpointPos its position.
	LastCheckpoint    time.Time
	LastCheckpointPos Position

	// Lag is, for the newest batch or heartbeat the Sink acknowledged, the
	// time from the Stream receiving it from the Cursor (or creating the
	// heartbeat) to the Sink acknowledging it. Heartbeats keep it fresh
	// while the Source is idle. It does not include the time a record
	// spent in the Source before the Cursor returned it; a Sink that
	// stores heartbeats lets the target measure that too.
	Lag time.Duration
	// LastApplied is when the Sink last acknowledged a batch or heartbeat.
	LastApplied time.Time
}

// statsBox guards a Stats. The hot path touches it once per batch, so a
// mutex costs nothing measurable and keeps the snapshot consistent.
type statsBox struct {
	mu sync.Mutex
	s  Stats
}

func (b *statsBox) snapshot() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.s
	s.LastCheckpointPos = append(Position(nil), s.LastCheckpointPos...)
	return s
}

func (b *statsBox) update(f func(*Stats)) {
	b.mu.Lock()
	f(&b.s)
	b.mu.Unlock()
}
