package pgcdc

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/hakit/hakit/replicate"
)

// receive is the receiver goroutine: the initial load if any, then the
// replication stream, status updates and progress.
func (c *cursor) receive(ctx context.Context) {
	if c.load != nil {
		if err := c.runLoad(ctx); err != nil {
			c.fail(err)
			return
		}
		if err := c.startReplication(ctx); err != nil {
			c.fail(err)
			return
		}
	}
	r := &receiver{c: c, dec: newDecoder(c.s.cfg.MaxTransactionBytes), every: c.s.cfg.StatusInterval,
		received: c.startLSN, lastLSN: c.startLSN, lastQueued: time.Now()}
	if err := r.run(ctx); err != nil && ctx.Err() == nil {
		c.fail(err)
	}
}

// receiver is the state of the replication stream's loop.
type receiver struct {
	c     *cursor
	dec   *decoder
	every time.Duration // StatusInterval

	received     LSN       // the end of the last transaction received
	lastLSN      LSN       // the LSN of the last position queued
	lastQueued   time.Time // when something was last queued
	sentFlush    LSN       // the flush position last reported
	sentAt       time.Time
	nextStatus   time.Time // a status update is due then at the latest
	askedAt      time.Time // when a keepalive was last asked for
	wantReply    bool      // the server asked for a status update
	readDeadline time.Time
}

// run reads the replication stream until ctx ends or it fails.
func (r *receiver) run(ctx context.Context) error {
	c, cfg := r.c, r.c.s.cfg
	for {
		if err := r.maybeStatus(ctx, time.Now()); err != nil {
			return err
		}
		// A read deadline on the connection, renewed only when it
		// passed, instead of a context per message: the loop wakes every
		// StatusInterval/4 at least, and a message costs no timer work.
		if now := time.Now(); now.After(r.readDeadline) {
			r.readDeadline = now.Add(r.every / 4)
			if err := c.repl.Conn().SetReadDeadline(r.readDeadline); err != nil {
				return fmt.Errorf("pgcdc: slot %q: set read deadline: %w", cfg.Slot, err)
			}
		}
		msg, err := c.repl.ReceiveMessage(context.Background())
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if pgconn.Timeout(err) {
				r.readDeadline = time.Time{}
				continue
			}
			var big *pgproto3.ExceededMaxBodyLenErr
			if errors.As(err, &big) {
				return fmt.Errorf("%w: slot %q: a message of %d bytes, more than MaxTransactionBytes allows (%d)",
					ErrTransactionTooLarge, cfg.Slot, big.ActualBodyLen, cfg.MaxTransactionBytes)
			}
			return fmt.Errorf("pgcdc: slot %q: receive: %w", cfg.Slot, err)
		}
		switch m := msg.(type) {
		case *pgproto3.CopyData:
			if err := r.copyData(ctx, m.Data); err != nil {
				return err
			}
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("pgcdc: slot %q: server: %w", cfg.Slot, pgconn.ErrorResponseToPgError(m))
		case *pgproto3.CopyDone:
			return fmt.Errorf("pgcdc: slot %q: the server ended the stream", cfg.Slot)
		default:
			// Notices and parameter changes are informational.
		}
	}
}

// maybeStatus sends a status update when one is due: the server asked,
// the stream has been idle long enough to ask the server how far it read
// (for a progress record), the durable position moved (at most every
// StatusInterval/4), or StatusInterval passed.
func (r *receiver) maybeStatus(ctx context.Context, now time.Time) error {
	cfg := r.c.s.cfg
	idle := cfg.ProgressInterval > 0 && now.Sub(r.lastQueued) >= cfg.ProgressInterval && now.Sub(r.askedAt) >= cfg.ProgressInterval
	moved := LSN(r.c.acked.Load()) != r.sentFlush && now.Sub(r.sentAt) >= r.every/4
	if !r.wantReply && !idle && !moved && !now.After(r.nextStatus) {
		return nil
	}
	if idle {
		r.askedAt = now
	}
	r.wantReply = false
	return r.sendStatus(ctx, idle)
}

// sendStatus reports the durable position as flushed (and applied), and
// what was received as written.
func (r *receiver) sendStatus(ctx context.Context, reply bool) error {
	c, cfg := r.c, r.c.s.cfg
	flush := LSN(c.acked.Load())
	// A server that stopped reading must not hang the loop: past the
	// deadline the write fails and so does the stream.
	if err := c.repl.Conn().SetWriteDeadline(time.Now().Add(max(r.every*5, 10*time.Second))); err != nil {
		return fmt.Errorf("pgcdc: slot %q: set write deadline: %w", cfg.Slot, err)
	}
	err := pglogrepl.SendStandbyStatusUpdate(ctx, c.repl, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: max(r.received, flush), WALFlushPosition: flush, WALApplyPosition: flush, ReplyRequested: reply,
	})
	if err != nil {
		return fmt.Errorf("pgcdc: slot %q: send status update: %w", cfg.Slot, err)
	}
	r.sentFlush, r.sentAt = flush, time.Now()
	r.nextStatus = r.sentAt.Add(r.every)
	c.stats.update(func(st *Stats) { st.Flushed = flush })
	return nil
}

// wait is what push does while the queue is full: keep the server
// informed, so that it neither times out nor keeps WAL needlessly.
func (r *receiver) wait(ctx context.Context) func() {
	return func() {
		select {
		case <-ctx.Done():
			return
		case <-time.After(r.every / 4):
		}
		if LSN(r.c.acked.Load()) != r.sentFlush || time.Now().After(r.nextStatus) {
			if err := r.sendStatus(ctx, false); err != nil {
				r.c.fail(err)
			}
		}
	}
}

// copyData handles one message of the stream: a keepalive or WAL data.
func (r *receiver) copyData(ctx context.Context, data []byte) error {
	cfg := r.c.s.cfg
	if len(data) == 0 {
		return fmt.Errorf("%w: empty CopyData", ErrProtocol)
	}
	switch data[0] {
	case pglogrepl.PrimaryKeepaliveMessageByteID:
		ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
		if err != nil {
			return fmt.Errorf("%w: keepalive: %v", ErrProtocol, err)
		}
		r.wantReply = r.wantReply || ka.ReplyRequested
		return r.progress(ctx, ka.ServerWALEnd, ka.ServerTime)
	case pglogrepl.XLogDataByteID:
		xld, err := pglogrepl.ParseXLogData(data[1:])
		if err != nil {
			return fmt.Errorf("%w: XLogData: %v", ErrProtocol, err)
		}
		if r.c.s.tap != nil {
			r.c.s.tap(xld.WALData)
		}
		tx, err := r.dec.decode(xld.WALData)
		if err != nil {
			return fmt.Errorf("pgcdc: slot %q at %s: %w", cfg.Slot, xld.WALStart, err)
		}
		if tx != nil {
			return r.transaction(ctx, tx)
		}
		return nil
	}
	return fmt.Errorf("%w: unknown CopyData message %q", ErrProtocol, data[0])
}

// progress emits a progress record at walEnd if the stream is between
// transactions, has been idle for ProgressInterval, and the server read
// past the last position. Everything the server decoded before walEnd was
// sent before its keepalive, so there it is a safe resume point; like a
// transaction's last change, it carries the initial load's filters while
// they still skip anything.
func (r *receiver) progress(ctx context.Context, walEnd LSN, at time.Time) error {
	cfg := r.c.s.cfg
	if cfg.ProgressInterval <= 0 || r.dec.inTx() || walEnd <= r.lastLSN || time.Since(r.lastQueued) < cfg.ProgressInterval {
		return nil
	}
	rec := progressRecord(walEnd, at, r.c.carried(walEnd))
	if !r.c.push(ctx, []replicate.Record{rec}, r.wait(ctx)) {
		return ctx.Err()
	}
	r.lastLSN, r.lastQueued, r.received = walEnd, time.Now(), max(r.received, walEnd)
	r.c.stats.update(func(st *Stats) { st.Progress++ })
	return nil
}

// transaction queues a transaction the decoder completed.
func (r *receiver) transaction(ctx context.Context, tx *txn) error {
	r.received = max(r.received, tx.endLSN)
	r.c.filter(tx)
	if len(tx.recs) == 0 {
		return nil
	}
	if !r.c.push(ctx, tx.recs, r.wait(ctx)) {
		return ctx.Err()
	}
	r.lastLSN, r.lastQueued = tx.endLSN, time.Now()
	n, end := len(tx.recs), tx.endLSN
	r.c.stats.update(func(st *Stats) { st.Transactions++; st.Changes += uint64(n); st.Received = end })
	return nil
}

// progressRecord is a record that only moves the position to lsn; state
// is the initial load's, or nil.
func progressRecord(lsn LSN, at time.Time, state []byte) replicate.Record {
	return replicate.Record{
		Pos:  Pos{LSN: lsn, Last: true, Load: state}.Encode(),
		Data: appendChangeHeader(nil, OpProgress, 0, lsn, at),
	}
}
