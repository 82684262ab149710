package pgcdc

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/hakit/hakit/replicate"
)

// Open starts reading the publication after from.Pos (replicate.Source).
//
// It checks the publication, finds the slot (creating it if CreateSlot
// and from is the beginning), terminates a walsender that still holds the
// slot (a deposed member's) and waits up to SlotWait for it to be free,
// refuses a slot whose confirmed flush position is past from.Pos
// (ErrSlotAhead), and starts streaming. With InitialLoad and from at the
// beginning, the published tables are copied first (see the package doc).
func (s *Source) Open(ctx context.Context, from replicate.Checkpoint) (replicate.Cursor, error) {
	start, err := DecodePos(from.Pos)
	if err != nil {
		return nil, err
	}
	if len(from.Pos) > 0 && !start.Last && start.Load == nil {
		return nil, fmt.Errorf("%w: %s is inside a transaction; this source resumes only after a whole transaction", ErrPosition, start)
	}
	admin, err := s.connect(ctx)
	if err != nil {
		return nil, err
	}
	c := &cursor{s: s, admin: admin, opened: start, stats: &s.stats, typeMap: pgtype.NewMap()}
	ok := false
	defer func() {
		if !ok {
			_ = c.Close()
		}
	}()
	if err := s.checkPublication(ctx, admin); err != nil {
		return nil, err
	}
	si, exists, err := s.freeSlot(ctx, admin)
	if err != nil {
		return nil, err
	}
	if exists && (si.slotType != "logical" || si.plugin != "pgoutput" || si.database != s.connCfg.Database) {
		return nil, fmt.Errorf("%w: slot %q is a %s slot of plugin %q on database %q; this source needs a logical slot of plugin pgoutput on %q",
			ErrSlot, s.cfg.Slot, si.slotType, si.plugin, si.database, s.connCfg.Database)
	}
	if c.repl, err = s.connectReplication(ctx); err != nil {
		return nil, err
	}
	switch {
	case len(from.Pos) == 0 && s.cfg.InitialLoad:
		if err := c.startLoad(ctx, exists); err != nil {
			return nil, err
		}
	case start.Load != nil:
		if !exists {
			return nil, s.noSlot(start)
		}
		if err := c.resumeLoad(ctx, si, start); err != nil {
			return nil, err
		}
	case !exists && len(from.Pos) == 0 && s.cfg.CreateSlot:
		res, err := pglogrepl.CreateReplicationSlot(ctx, c.repl, s.cfg.Slot, "pgoutput", pglogrepl.CreateReplicationSlotOptions{Mode: pglogrepl.LogicalReplication, SnapshotAction: "NOEXPORT_SNAPSHOT"})
		if err != nil {
			return nil, fmt.Errorf("pgcdc: create slot %q on %s: %w", s.cfg.Slot, s.where(), err)
		}
		if c.startLSN, err = pglogrepl.ParseLSN(res.ConsistentPoint); err != nil {
			return nil, fmt.Errorf("pgcdc: create slot %q: consistent point %q: %w", s.cfg.Slot, res.ConsistentPoint, err)
		}
		s.cfg.Logger.Info("pgcdc: created replication slot", "slot", s.cfg.Slot, "lsn", c.startLSN.String())
	case !exists:
		return nil, s.noSlot(start)
	case len(from.Pos) == 0:
		c.startLSN = si.confirmed
		s.cfg.Logger.Info("pgcdc: stream starts at the slot's confirmed position", "slot", s.cfg.Slot, "lsn", si.confirmed.String())
	default:
		if si.confirmed > start.LSN {
			return nil, fmt.Errorf("%w: slot %q has confirmed %s, past the resume position %s: the changes in between were confirmed elsewhere (another consumer of the slot, or a target restored from an older backup) and are not in the target",
				ErrSlotAhead, s.cfg.Slot, si.confirmed, start.LSN)
		}
		c.startLSN = start.LSN
	}
	if err := c.startStreaming(ctx); err != nil {
		return nil, err
	}
	ok = true
	return c, nil
}

func (s *Source) noSlot(start Pos) error {
	if start.LSN == 0 {
		return fmt.Errorf("%w: slot %q on %s: create it (SELECT pg_create_logical_replication_slot('%s', 'pgoutput')) or set CreateSlot",
			ErrNoSlot, s.cfg.Slot, s.where(), s.cfg.Slot)
	}
	return fmt.Errorf("%w: slot %q on %s, and the target stands at %s: the changes after it are gone with the slot; recreate the slot and reload the target (start it empty with InitialLoad)",
		ErrNoSlot, s.cfg.Slot, s.where(), start)
}

// cursor is an open stream. The receiver goroutine owns repl once
// streaming started; Next takes what it queued.
type cursor struct {
	s      *Source
	admin  *pgx.Conn // checks, the initial load, then the heartbeat writer
	repl   *pgconn.PgConn
	opened Pos

	startLSN LSN           // where streaming starts
	acked    atomic.Uint64 // the highest LSN known durable
	load     *loader       // the initial load in progress, or nil
	// filters: tables copied by the initial load under a snapshot later
	// than the slot's start, and that snapshot's LSN (see loadState).
	filters map[string]LSN
	typeMap *pgtype.Map

	mu       sync.Mutex
	cond     *sync.Cond
	queue    [][]replicate.Record // whole transactions, in order
	queued   int                  // bytes in queue
	err      error                // the receiver's failure
	lastPos  replicate.Position   // the position after the last record Next returned
	stopOnce sync.Once
	cancel   context.CancelFunc
	done     chan struct{} // closed when the goroutines stopped
	wg       sync.WaitGroup

	stats *statsBox
}

var (
	_ replicate.Acknowledger  = (*cursor)(nil)
	_ replicate.AtomicChunker = (*cursor)(nil)
)

// AtomicChunks: every Next returns whole transactions.
func (c *cursor) AtomicChunks() bool { return true }

// Acknowledge records that everything up to p is durable; the receiver
// reports it to the server as flushed.
func (c *cursor) Acknowledge(p replicate.Position) {
	pos, err := DecodePos(p)
	if err != nil || (!pos.Last && pos.Load == nil) {
		return // not a resume point: nothing can be released for it
	}
	for {
		cur := c.acked.Load()
		if uint64(pos.LSN) <= cur || c.acked.CompareAndSwap(cur, uint64(pos.LSN)) {
			return
		}
	}
}

// startStreaming issues START_REPLICATION and starts the goroutines.
func (c *cursor) startStreaming(ctx context.Context) error {
	s := c.s
	if c.acked.Load() == 0 {
		c.acked.Store(uint64(c.startLSN))
	}
	c.cond = sync.NewCond(&c.mu)
	rctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.done = make(chan struct{})
	if c.load == nil {
		if err := c.startReplication(ctx); err != nil {
			cancel()
			return err
		}
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.receive(rctx)
	}()
	if s.cfg.HeartbeatTable != "" {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.heartbeat(rctx)
		}()
	}
	go func() { c.wg.Wait(); close(c.done) }()
	return nil
}

func (c *cursor) startReplication(ctx context.Context) error {
	s := c.s
	err := pglogrepl.StartReplication(ctx, c.repl, s.cfg.Slot, c.startLSN, pglogrepl.StartReplicationOptions{
		Mode:       pglogrepl.LogicalReplication,
		PluginArgs: []string{"proto_version '1'", "publication_names '" + s.cfg.Publication + "'"},
	})
	if err != nil {
		var pgErr *pgconn.PgError
		switch {
		case errors.As(err, &pgErr) && pgErr.Code == "55006": // object_in_use: the slot was taken meanwhile
			return fmt.Errorf("%w: start replication on slot %q: %w", ErrSlotBusy, s.cfg.Slot, err)
		case errors.As(err, &pgErr) && pgErr.Code == "42704":
			return fmt.Errorf("%w: start replication on slot %q: %w", ErrNoSlot, s.cfg.Slot, err)
		}
		return fmt.Errorf("pgcdc: start replication on slot %q at %s: %w", s.cfg.Slot, c.startLSN, err)
	}
	s.cfg.Logger.Info("pgcdc: streaming", "slot", s.cfg.Slot, "publication", s.cfg.Publication, "from", c.startLSN.String())
	return nil
}

// queuedSize is what recs count for in the queue's bound. push and Next
// both use it, so that the count is back to zero when the queue is empty
// whatever happened to the records before they were queued.
func queuedSize(recs []replicate.Record) int {
	n := 0
	for _, r := range recs {
		n += len(r.Data) + len(r.Pos)
	}
	return n
}

// push queues a whole transaction (or load chunk), waiting while the
// queue holds BufferBytes, unless it is empty.
func (c *cursor) push(ctx context.Context, recs []replicate.Record, wait func()) bool {
	size := queuedSize(recs)
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.queued > 0 && c.queued+size > c.s.cfg.BufferBytes {
		if ctx.Err() != nil {
			return false
		}
		if wait != nil {
			c.mu.Unlock()
			wait()
			c.mu.Lock()
			continue
		}
		c.cond.Wait()
	}
	c.queue = append(c.queue, recs)
	c.queued += size
	c.cond.Broadcast()
	return true
}

// fail records the receiver's error for Next.
func (c *cursor) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.cond.Broadcast()
	c.mu.Unlock()
}

// Next returns whole transactions, at least one, and more while they fit
// in max records.
func (c *cursor) Next(ctx context.Context, max int) ([]replicate.Record, error) {
	stop := context.AfterFunc(ctx, func() {
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	defer stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.queue) == 0 {
		if c.err != nil {
			return nil, c.err
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		c.cond.Wait()
	}
	var out []replicate.Record
	n := 0
	for n < len(c.queue) && (len(out) == 0 || len(out)+len(c.queue[n]) <= max) {
		if len(out) == 0 {
			out = c.queue[n]
		} else {
			out = append(out, c.queue[n]...)
		}
		c.queued -= queuedSize(c.queue[n])
		n++
	}
	c.queue = c.queue[n:]
	c.lastPos = out[len(out)-1].Pos
	c.cond.Broadcast()
	return out, nil
}

// Checkpoint is the position after the last record Next returned: always
// the end of a transaction (or of a load chunk).
func (c *cursor) Checkpoint() replicate.Checkpoint {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lastPos == nil {
		return replicate.Checkpoint{Pos: c.opened.encodeOrNil()}
	}
	return replicate.Checkpoint{Pos: c.lastPos}
}

func (p Pos) encodeOrNil() replicate.Position {
	if p.LSN == 0 && p.Seq == 0 && !p.Last && p.Load == nil {
		return nil
	}
	return p.Encode()
}

// Close stops the goroutines and closes both connections. The last
// status update the server got stays its confirmed position.
func (c *cursor) Close() error {
	c.stopOnce.Do(func() {
		if c.cancel != nil {
			c.cancel()
		}
		if c.cond != nil {
			c.mu.Lock()
			c.cond.Broadcast()
			c.mu.Unlock()
		}
		if c.done != nil {
			<-c.done
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if c.load != nil {
			c.load.close(ctx)
		}
		if c.repl != nil {
			_ = c.repl.Close(ctx)
		}
		if c.admin != nil {
			_ = c.admin.Close(ctx)
		}
	})
	return nil
}

// heartbeat updates the heartbeat row every HeartbeatInterval.
func (c *cursor) heartbeat(ctx context.Context) {
	s := c.s
	t := time.NewTicker(s.cfg.HeartbeatInterval)
	defer t.Stop()
	q := `INSERT INTO ` + s.cfg.HeartbeatTable + ` (slot, beat) VALUES ($1, now()) ON CONFLICT (slot) DO UPDATE SET beat = excluded.beat`
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := c.admin.Exec(ctx, q, s.cfg.Slot); err != nil {
			if ctx.Err() != nil {
				return
			}
			s.cfg.Logger.Warn("pgcdc: heartbeat", "table", s.cfg.HeartbeatTable, "err", err)
			continue
		}
		c.stats.update(func(st *Stats) { st.Heartbeats++ })
	}
}

// carried returns the initial load's state that a resume point must
// carry when everything after it commits at lsn or later: the filters,
// until lsn reaches the latest snapshot a table was copied under; from
// then on no change is skipped, and the filters are dropped for good.
func (c *cursor) carried(lsn LSN) []byte {
	if len(c.filters) == 0 {
		return nil
	}
	st := loadState{filters: c.filters}
	if lsn >= st.maxFilter() {
		c.filters = nil
		return nil
	}
	return st.encode()
}

// filter drops the changes of tables the initial load copied under a
// snapshot that already holds this transaction, and carries the load's
// state in the transaction's last position until every such snapshot is
// passed.
func (c *cursor) filter(tx *txn) {
	state := c.carried(tx.finalLSN)
	if state == nil {
		return
	}
	kept := tx.recs[:0]
	for i, r := range tx.recs {
		if l, ok := c.filters[tx.tables[i]]; !ok || tx.finalLSN >= l {
			kept = append(kept, r)
		}
	}
	tx.recs = kept
	setPositions(tx.recs, tx.endLSN, state)
}
