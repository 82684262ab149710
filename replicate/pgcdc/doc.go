// Package pgcdc is a replicate.Source that captures the changes of a
// PostgreSQL database through logical replication: a publication names
// the tables, a replication slot (plugin pgoutput, protocol version 1)
// keeps the server's write-ahead log until the reader confirms it, and the
// replication protocol runs over github.com/jackc/pglogrepl and pgx v5.
//
// # Records
//
// Each record is one row change (insert, update, delete, truncate) of a
// published table, encoded as documented at Change and decoded with
// DecodeChange or a Decoder: the table's schema and name, its columns
// (name, type OID, type modifier, whether the column is part of the
// replica identity — the primary key by default), the new row, the old
// row where the table's replica identity gives it (the old key when an
// update changed it or for a delete; every old column under REPLICA
// IDENTITY FULL), the transaction's ID, commit LSN and commit time.
// Values keep PostgreSQL's text form, which is lossless for every type;
// Value.Decode turns one into a Go value through pgtype. Only types built
// into PostgreSQL are replicated: a column of an enum, domain, composite
// or extension type stops the stream with an error naming the table, the
// column and the type (ErrUnsupportedType).
//
// A record's position is the end LSN of its transaction's commit record
// and its index in the transaction (see Pos); Compare orders them. Next
// returns whole transactions only, and the Cursor is a
// replicate.AtomicChunker, so a replicate.Stream hands each source
// transaction to its Sink in one batch; a transaction bigger than
// Config.MaxTransactionBytes stops the stream (ErrTransactionTooLarge)
// rather than be split.
//
// # Never ahead of what is durable
//
// The Cursor is a replicate.Acknowledger: the Stream tells it which
// positions are durable (applied by a DurableSink, or in a committed
// checkpoint), and only those are reported to the server as flushed in
// the standby status updates, every Config.StatusInterval. The slot's
// confirmed position, and so the WAL the server may remove, never passes
// what a successor may need. When nothing for the publication has
// happened for Config.ProgressInterval, the source asks the server how far
// it has read and emits a progress record (OpProgress) at that position:
// once a sink stores it, the slot moves past WAL that held nothing for the
// publication, so a quiet publication on a busy server does not make WAL
// pile up.
//
// When the stream resumes, a slot whose confirmed position is past the
// resume position means that someone else consumed the changes in between
// (another consumer of the slot, or a target restored from an older
// backup): Open refuses with ErrSlotAhead naming both LSNs rather than
// skip them. A replicate.Stream whose sink stands behind its checkpoint
// (a restored target) opens the source at the sink's position, and
// reports that refusal as replicate.ErrGap; while the slot has not
// confirmed past the sink's position, the changes are read again and the
// target catches up. A dropped slot gives ErrNoSlot, a missing
// publication ErrNoPublication.
//
// # One consumer per slot, fenced
//
// A slot admits one walsender. A member that was deposed while frozen, or
// whose TCP connection is half open, can still hold it. Open, which a
// Stream calls only after its term has claimed the checkpoint (so a
// deposed member cannot get there), terminates the walsender that holds
// the slot (pg_terminate_backend of its active_pid) and waits until the
// slot is free, up to Config.SlotWait; past that, or when the role may
// not terminate the holder, it fails with ErrSlotBusy naming the PID.
//
// # Initial load
//
// With Config.InitialLoad and a stream that starts at the beginning, Open
// (re)creates the slot exporting a snapshot, copies every published table
// under that snapshot — each table preceded by a truncate of the target's
// copy, rows in chunks of Config.LoadBatchRows — and then streams from the
// slot's start, so the target starts complete and consistent. The load's
// progress is in the positions. After a failover in the middle of the
// copy, the tables copied whole are kept; the others are copied again
// under a new snapshot (a temporary slot's), and while streaming, their
// changes in transactions that committed before that snapshot are skipped
// (they are in the copy). If the publication's tables changed in the
// meantime, the load stops with ErrLoad, saying how to start it again.
//
// # Heartbeats
//
// With Config.HeartbeatTable, the active member updates one row of that
// table (which must be in the publication; Setup adds it) every
// Config.HeartbeatInterval. It is replicated like any table; a sink that
// knows it (replicate/pgsink) measures end-to-end latency from the
// source's commit time to its own commit.
//
// # Role and privileges
//
// The source role needs: the REPLICATION attribute (or superuser), to
// open replication connections and create slots; CONNECT on the database;
// SELECT on the published tables for the initial load (ownership of them,
// or superuser, to create a publication FOR TABLE; FOR ALL TABLES needs
// superuser); INSERT and UPDATE on the heartbeat table, and CREATE on its
// schema for Setup to create it. Terminating a stuck walsender needs the
// same role as the walsender's (members normally all connect as one role,
// which suffices) or membership in pg_signal_backend (which cannot signal
// a superuser's backend). The server needs wal_level=logical and enough
// max_replication_slots and max_wal_senders (one each per stream, one
// more slot and sender while an initial load resumes); pg_hba.conf must
// admit the role to the "replication" pseudo-database and the database
// itself. Use TLS (sslmode=verify-full in the connection string).
//
// # Not supported yet
//
// Streaming of large in-progress transactions (pgoutput's streaming
// option; a transaction is held in memory whole, bounded by
// MaxTransactionBytes), two-phase commit decoding, sequences, DDL (a
// schema change must be made on the target first, then the source), types
// not built into PostgreSQL, binary-format values, row filters and column
// lists of PostgreSQL 15 publications beyond what the server applies
// itself, logical decoding messages, and failover of the source database
// itself (a slot does not survive promotion of a physical standby before
// PostgreSQL 17).
package pgcdc
