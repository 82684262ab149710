package pgcdc

import "sync"

// Stats are a Source's counters, cumulative over its Cursors.
type Stats struct {
	Transactions uint64 // source transactions received
	Changes      uint64 // change records received (initial load rows included)
	LoadedRows   uint64 // rows copied by the initial load
	LoadedTables uint64 // tables the initial load copied whole
	Progress     uint64 // progress records emitted
	Heartbeats   uint64 // heartbeat rows written to the source
	Received     LSN    // the end of the last transaction received
	Flushed      LSN    // the position last reported to the server as durable
}

type statsBox struct {
	mu sync.Mutex
	s  Stats
}

func (b *statsBox) update(f func(*Stats)) {
	b.mu.Lock()
	f(&b.s)
	b.mu.Unlock()
}

func (b *statsBox) get() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.s
}

// Stats returns a snapshot of the Source's counters.
func (s *Source) Stats() Stats { return s.stats.get() }
