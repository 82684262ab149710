// Package raftlog is the durable log of a Raft node built on
// go.etcd.io/raft/v3: a write-ahead log (WAL) of entries and HardState,
// plus snapshot files, in one directory. A *Log implements raft.Storage
// (backed by a raft.MemoryStorage rebuilt from disk on Open), and its Save
// method persists one raft.Ready before the caller sends the messages
// that depend on it.
//
// # Using it
//
//	l, err := raftlog.Open(dir, raftlog.WithLogger(logger))
//	// l.Recovered() says whether a torn tail was cut.
//	hs, _, _ := l.InitialState()
//	cfg := &raft.Config{ID: id, Storage: l, ...}
//	// raft.RestartNode(cfg) if !raft.IsEmptyHardState(hs) or a
//	// snapshot exists, else raft.StartNode(cfg, peers).
//	for rd := range node.Ready() {
//		if err := l.Save(rd.HardState, rd.Entries, rd.Snapshot); err != nil { ... }
//		send(rd.Messages) // only now
//		apply(rd.Snapshot, rd.CommittedEntries)
//		node.Advance()
//	}
//	// From time to time, at an applied index:
//	l.CreateSnapshot(applied, &confState, stateMachineBytes)
//	l.Compact(applied - keep)
//
// # Durability order
//
// Save writes the snapshot first (its own file: temporary name, fsync,
// rename, directory fsync), then the entries, then the HardState, the
// last two as one WAL batch ended by a commit record and followed by
// fdatasync. Save returns only after the sync, so when it returns the
// snapshot, entries and HardState are on disk and messages may be sent.
// Writing the snapshot before the entries that follow it means a crash
// can never leave entries whose predecessors are missing; writing the
// HardState last means its commit index never points past the log.
//
// A crash during Save loses the whole batch or nothing: recovery drops
// records after the last commit record. A snapshot file written by a Save
// or CreateSnapshot that did not finish is not named in the WAL; Open
// deletes it (an orphan).
//
// # File format
//
// The directory holds:
//
//	LOCK                                 flock(2) held while open
//	<seq:%016x>-<previndex:%016x>.wal    WAL segments, seq 0, 1, 2, ...
//	<index:%016x>-<term:%016x>.snap      snapshot files
//	*.tmp                                files being created; deleted by Open
//
// A segment is a sequence of records:
//
//	type u8 | payload length u32 LE | CRC-32C u32 LE | payload
//
// The CRC covers type, length and payload and is seeded with a checksum
// of the segment's sequence number, so a record from one segment does
// not verify in another. Payloads are protobuf encodings from raftpb:
// an Entry, a HardState, or a SnapshotMetadata (index and term) that
// either restarts the log (a snapshot received through Save) or marks a
// local snapshot (CreateSnapshot). Every segment starts with a header
// record (magic "HKRLWAL\0", format version, sequence number, the last
// log index and term when it began, and the newest snapshot then),
// followed by the HardState, so that deleting older segments never loses
// the HardState. A batch ends with an empty commit record. A new segment
// is begun when the active one reaches the segment size (WithSegmentSize,
// 64 MiB by default); it is created under a temporary name and renamed,
// so every segment file has a complete header.
//
// A snapshot file is
//
//	magic "HKRLSNP\0" | version u32 LE | body length u64 LE | CRC-32C u32 LE | body
//
// where the CRC covers version, length and body, and the body is the
// raftpb.Snapshot (metadata and data). The index and term in the name
// must match the body.
//
// # Recovery rules
//
// Open reads every segment in sequence order, picks the snapshot, and
// replays the WAL on top of it:
//
//   - Torn tail. If the last segment ends in an incomplete batch (a short
//     header or payload, a bad checksum, or valid records with no commit
//     record after them) and no valid record starts anywhere after the
//     first bad byte, that tail is a torn write. It is cut off (the file
//     is truncated and synced), logged as a warning and reported in
//     Recovered().Torn with the file, offset and bytes dropped. Only a
//     batch whose Save had not returned can be lost this way.
//   - Damage. A bad record followed by a valid one, a bad or incomplete
//     record in any segment but the last, a bad segment header, a gap in
//     the segment sequence, or records that do not join up (an entry
//     after a gap, a segment that does not start where the previous one
//     ended) make Open fail with a *CorruptError wrapping ErrCorrupt and
//     naming the file and byte offset. So does a bad record followed by
//     bytes too costly to search for valid records (the search is bounded;
//     see below). Nothing is modified: an Open that fails repairs nothing.
//   - Snapshots. The WAL names every durable snapshot. The newest valid
//     snapshot file not newer than the newest one the WAL names is used.
//     If the newest is damaged, an older valid one is used only if the
//     WAL still holds every entry from there on and does not restart the
//     log at a later snapshot; otherwise Open fails. If the WAL names a
//     snapshot and no file is usable, Open fails: it never starts from an
//     empty log in place of a damaged one.
//   - The state. Entries come from the snapshot plus the WAL; the
//     HardState is the last one written (its commit raised to the
//     snapshot index if below it, since a snapshot holds only committed
//     state); the ConfState is the snapshot's. Entries covered by the
//     snapshot are not loaded, as if Compact had been called at the
//     snapshot index.
//
// # What it does not do
//
// It is written for Linux and other unix systems: it relies on flock(2)
// to keep a second process out, and on fsync of a directory to make
// renames and removals durable.
//
// Telling a torn tail from damage relies on searching the bytes after the
// first bad record for a valid one. A torn write whose later sectors
// reached the disk while earlier ones did not therefore looks like damage
// and is refused, not cut: the format cannot tell it from bit rot in
// acknowledged data, and refusing is the safe side. The search checksums
// at most 16 times the segment size; past that, Open refuses as well.
//
// Log keeps every entry after the last compaction in memory, as
// raft.MemoryStorage does, but no snapshot data: Snapshot reads it from
// the file, and CreateSnapshotFrom writes a state machine to the file as
// it is encoded. It trusts the file system's fsync and rename;
// a device that acknowledges writes it has not stored defeats it, and
// damage that happens to leave an intact shorter log (a file truncated
// exactly at a batch boundary) cannot be told from a log that was never
// longer.
package raftlog
