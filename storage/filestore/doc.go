// Package filestore is a storage.Backend kept in a directory, for the
// shared-storage setup: several hosts mount one volume (NFSv4, Amazon
// EFS) and the active member keeps its checkpoints there. Wrap it with
// storage.Fenced to get a fenced Store.
//
// Init creates a store once, when the volume is provisioned; Open only
// opens one. A directory without a store is an error (ErrNoStore), so a
// volume that failed to mount, leaving an empty mount point, never looks
// like an empty store from which replication would restart at zero. For
// the same reason a key is reported absent only while the store's files
// are still there.
//
// # Layout
//
// The directory holds a lock file (LOCK), the store-wide version counter
// (VERSION), at times a journal (JOURNAL), and one file per key under k/,
// named by the hex SHA-256 of the key, so that any valid key maps to a
// safe, fixed-length name that cannot leave the directory. Every file is
// one record: a header (magic, format version, kind, version, key length,
// value length), the key, the value and a CRC-32C of all of it. A file
// that is truncated, extended, torn or altered is an error wrapping
// storage.ErrCorrupt that names the file and the offset at fault; it is
// never read as absent or empty. A key file whose stored key is not the
// requested one is an error too.
//
// # Crash safety
//
// Every file is replaced by writing a temporary file, fsyncing it,
// renaming it over the old one and fsyncing the directory, so after a
// crash each file is either old or new. The version counter is advanced
// before a key file is written, so a crash can waste a version but never
// hand one out twice. A commit of several ops first writes a journal
// record listing them; the journal's rename is the commit point. Whoever
// takes the lock next (Open, Get or Commit) finds the journal and
// completes the commit before doing anything else, so no reader ever sees
// part of a commit, and a crash before the commit point leaves no trace
// but a wasted version and a temporary file, which Open removes. A
// commit returns only when everything it wrote is durable.
//
// # Locking, and what it gives on NFSv4 and EFS
//
// Commit holds an exclusive flock(2) on the lock file for the whole step:
// read the conditions' keys and the counter, check, write. Get holds a
// shared lock. (flock makes the package Unix-only; elsewhere Init and
// Open fail.) Within a process a semaphore serialises the Backend's
// goroutines first, because the Linux NFS client emulates flock with
// POSIX byte-range locks, which belong to the process and not to the file
// descriptor (so: one Backend per directory per process).
//
// On NFSv4 (EFS speaks NFSv4.1) these locks are taken through the NFS
// protocol's own locking and are held under the client's lease with the
// server. A client that stops renewing its lease — it is partitioned from
// the server, or paused for longer than the server's lease time (90 s by
// default on Linux's NFS server; check your server's) — loses its locks,
// and another client may take the lock. That
// is exactly why the fence check happens inside the same locked step as
// the write: a deposed member that resumes does not write on the strength
// of a check made before it lost the lock. It must take the lock again,
// and then it reads the fence record that its successor raised, and its
// write is refused as stale. Taking a lock also makes the Linux NFS client
// revalidate its cached data, so what is read under the lock is current.
//
// What the lock does not give:
//   - Protection from a writer that does not take the lock (another
//     program, a person with a shell, this package's files edited by
//     hand). Locks on NFS are advisory.
//   - Anything on NFSv3 without a working lock manager (lockd/statd), or
//     on a mount with the nolock or local_lock options: flock is then
//     local to each host and processes on different hosts do not exclude
//     each other. Use NFSv4.
//   - Bounded recovery time independent of the server: a lock held by a
//     client that vanished is released only when the server expires its
//     lease, on the server's clock and its lease time; until then Commit
//     waits (honouring its context).
//   - Complete protection from a writer paused inside its own locked
//     step. A writer stopped (SIGSTOP, a frozen VM, a partition) after its
//     checks and before its rename, for longer than the server's lease
//     time, loses the lock; a successor may commit; and when the paused
//     writer resumes, its rename still lands, because NFS locks are
//     advisory (on EFS too) and a rename is not tied to a lock. The same
//     holds for a rename the client sent before a partition and, on a
//     hard mount, keeps retrying after it. Before every rename the commit checks how long it
//     has held the lock and gives up past WithMaxHold, which shrinks the
//     window to the few instructions between that check and the rename
//     but cannot remove it. Only a store that checks the token itself (the
//     etcd and Raft backends) closes it. Either way every file stays whole.
package filestore
