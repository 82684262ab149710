package filestore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/hakit/hakit/storage"
)

// Backend is a storage.Backend kept in a directory; see the package doc
// for the layout, the crash guarantees and what the lock gives on a
// network file system. It is safe for concurrent use, and several
// processes (on several hosts, if the directory is on a shared volume) may
// each have one open on the same directory. Within one process open the
// directory once and share the Backend: on NFS two Backends of one process
// would not exclude each other.
type Backend struct {
	dir, keys string
	lock      *dirLock
	maxHold   time.Duration

	// crash, if set (tests only), is called at each step of a commit; a
	// non-nil result stops the commit there as if the process had died,
	// leaving the files as they are.
	crash func(step string) error
}

// ErrNoStore is returned by Open for a directory that holds no store, and
// by Get and Commit if the store's files vanish from under an open
// Backend. It usually means the shared volume is not mounted (the mount
// point is an empty local directory) or the path is wrong; run Init once
// to create a store.
var ErrNoStore = errors.New("filestore: no store in directory")

// Init creates an empty store in dir, creating the directory if needed.
// Run it once, when the shared volume is provisioned: Open never creates
// a store, so that a volume that failed to mount is an error rather than
// an empty store from which replication would restart at zero. Init fails
// if dir already holds a store.
func Init(ctx context.Context, dir string) error {
	b := &Backend{dir: dir, keys: filepath.Join(dir, keysDir), maxHold: DefaultMaxHold}
	if err := os.MkdirAll(b.keys, 0o750); err != nil {
		return fmt.Errorf("filestore: create %s: %w", b.keys, err)
	}
	l, err := openLock(filepath.Join(dir, lockName), true)
	if err != nil {
		return err
	}
	defer l.close()
	b.lock = l
	if err := l.lock(ctx, true); err != nil {
		return err
	}
	defer l.unlock()
	_, err = b.readCounter()
	switch {
	case err == nil:
		return fmt.Errorf("filestore: init %s: %w", dir, fs.ErrExist)
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	if err := b.checkNoKeys(); err != nil {
		return err
	}
	if err := syncDir(dir); err != nil { // the lock file and k/
		return err
	}
	return b.writeCounter(0)
}

// Open opens the store that Init created in dir. It takes the lock to
// finish a commit that a crashed writer left half-done and to remove its
// temporary files. A directory without a store is an error matching
// ErrNoStore; a store whose version counter is missing while keys are
// present, or corrupt, is an error matching storage.ErrCorrupt: Open
// never starts counting versions from zero over existing data.
func Open(ctx context.Context, dir string, opts ...Option) (*Backend, error) {
	b := &Backend{dir: dir, keys: filepath.Join(dir, keysDir), maxHold: DefaultMaxHold}
	for _, o := range opts {
		o(b)
	}
	l, err := openLock(filepath.Join(dir, lockName), false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s has no %s (is the volume mounted? create a store with Init)", ErrNoStore, dir, lockName)
	}
	if err != nil {
		return nil, err
	}
	b.lock = l
	if err := b.open(ctx); err != nil {
		_ = l.close()
		return nil, err
	}
	return b, nil
}

func (b *Backend) open(ctx context.Context) error {
	if err := b.lock.lock(ctx, true); err != nil {
		return err
	}
	defer b.lock.unlock()
	if err := b.recover(); err != nil {
		return err
	}
	for _, d := range []string{b.dir, b.keys} {
		if err := removeTemps(d); err != nil {
			return err
		}
	}
	_, err := b.readCounter()
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := b.checkNoKeys(); err != nil {
		return err
	}
	// Init stopped between the lock file and the counter.
	return fmt.Errorf("%w: %s has no %s (create a store with Init)", ErrNoStore, b.dir, counterName)
}

// checkNoKeys fails if the keys directory is missing or holds key files.
func (b *Backend) checkNoKeys() error {
	entries, err := os.ReadDir(b.keys)
	if err != nil {
		return fmt.Errorf("filestore: list %s: %w", b.keys, err)
	}
	if len(entries) > 0 {
		return fmt.Errorf("filestore: %s is missing but %s holds %d files; refusing to restart versions from zero: %w",
			filepath.Join(b.dir, counterName), b.keys, len(entries), storage.ErrCorrupt)
	}
	return nil
}

// DefaultMaxHold is the longest a commit may hold the lock before its
// last rename; see WithMaxHold.
const DefaultMaxHold = 10 * time.Second

// ErrHeldTooLong is returned by a commit that found, just before one of
// its renames, that it had held the lock for longer than its maximum hold
// time. If it is returned before the commit point nothing was written; a
// journaled commit past its commit point is completed by the next holder.
var ErrHeldTooLong = errors.New("filestore: lock held too long")

// Option configures Open.
type Option func(*Backend)

// WithMaxHold sets how long a commit may hold the lock before any of its
// renames (default DefaultMaxHold). Before each rename that makes data
// visible, the commit checks how long it has held the lock and gives up
// with ErrHeldTooLong past d. Set d well below the NFS server's lease time
// (90 s by default on Linux's server), so that a writer that was paused
// long enough to lose its lease notices before it writes; the check
// cannot close the window entirely (see the package doc). d <= 0 is
// ignored.
func WithMaxHold(d time.Duration) Option {
	return func(b *Backend) {
		if d > 0 {
			b.maxHold = d
		}
	}
}

// guard is run just before every rename or removal that changes what
// readers see.
func (b *Backend) guard() error {
	if held := b.lock.heldFor(); held > b.maxHold {
		return fmt.Errorf("%w: %v, more than %v, before a rename in %s", ErrHeldTooLong, held.Round(time.Millisecond), b.maxHold, b.dir)
	}
	return nil
}

// Close releases the lock file. Calls after Close fail.
func (b *Backend) Close() error { return b.lock.close() }

// Dir returns the directory the store lives in.
func (b *Backend) Dir() string { return b.dir }

// Get returns the value and version stored under key, or an error
// matching storage.ErrNotFound. It reads under the shared lock, after
// finishing any commit a crashed writer left half-done, so it never sees
// part of a commit. A damaged file is an error matching storage.ErrCorrupt
// that names the file.
func (b *Backend) Get(ctx context.Context, key string) (storage.Item, error) {
	if err := ctx.Err(); err != nil {
		return storage.Item{}, err
	}
	if err := storage.ValidateKey(key); err != nil {
		return storage.Item{}, err
	}
	if err := b.lock.lock(ctx, false); err != nil {
		return storage.Item{}, err
	}
	defer b.lock.unlock()
	if _, err := os.Lstat(filepath.Join(b.dir, journalName)); err == nil {
		if err := b.lock.upgrade(ctx); err != nil {
			return storage.Item{}, err
		}
		if err := b.recover(); err != nil {
			return storage.Item{}, err
		}
	}
	r, err := b.readItem(key)
	if err != nil {
		return storage.Item{}, err
	}
	// The record's value aliases a buffer nobody else holds.
	return storage.Item{Value: r.value, Version: r.version}, nil
}

// Commit applies ops if every cond holds, all under the exclusive lock;
// see storage.Backend. The check of the conditions and the write form one
// locked step, so no other writer that respects the lock can change a
// condition's key between them (see the package doc for what the lock
// does not cover on a network file system).
//
// A commit of one op is one rename of the key's file (after the version
// counter is advanced). A commit of several ops is first written to a
// journal; the journal's rename is the commit point, and a crash after it
// is completed by the next Open, Get or Commit. Commit returns only once
// everything is durable. If ctx is done before the commit point, nothing
// is written and ctx's error is returned; after it, the commit completes.
func (b *Backend) Commit(ctx context.Context, conds []storage.Cond, ops []storage.Op) (storage.Version, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := storage.CheckCommit(conds, ops); err != nil {
		return 0, fmt.Errorf("filestore: %w", err)
	}
	if err := b.lock.lock(ctx, true); err != nil {
		return 0, err
	}
	defer b.lock.unlock()
	if err := b.recover(); err != nil {
		return 0, err
	}
	for _, c := range conds {
		cur := storage.Version(0)
		r, err := b.readItem(c.Key)
		switch {
		case err == nil:
			cur = r.version
		case !errors.Is(err, storage.ErrNotFound):
			return 0, err
		}
		if cur != c.Version {
			return 0, fmt.Errorf("filestore: key %q is at version %d, commit expects %d: %w", c.Key, cur, c.Version, storage.ErrConflict)
		}
	}
	counter, err := b.readCounter()
	if err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	v := counter + 1
	if len(ops) <= 1 {
		// The counter goes first: a crash before the key's rename wastes
		// version v; the other order could hand v out twice.
		if err := b.writeCounter(v); err != nil {
			return 0, err
		}
		if err := b.step("counter written"); err != nil {
			return 0, err
		}
		if err := b.apply(v, ops); err != nil {
			return 0, err
		}
		return v, nil
	}
	jpath := filepath.Join(b.dir, journalName)
	if err := writeFileAtomic(jpath, encodeRecord(record{kind: kindJournal, version: v, value: encodeOps(ops)}), b.guard); err != nil {
		return 0, err
	}
	if err := syncDir(b.dir); err != nil {
		return 0, err
	}
	if err := b.step("journal written"); err != nil {
		return 0, err
	}
	if err := b.finish(v, ops); err != nil {
		return 0, err
	}
	return v, nil
}

func (b *Backend) step(name string) error {
	if b.crash == nil {
		return nil
	}
	return b.crash(name)
}

// apply writes ops, each key file stamped with version v, and makes the
// result durable.
func (b *Backend) apply(v storage.Version, ops []storage.Op) error {
	for i, op := range ops {
		path := filepath.Join(b.keys, keyFileName(op.Key))
		if op.Delete {
			if err := b.guard(); err != nil {
				return err
			}
			if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("filestore: delete key %q (%s): %w", op.Key, path, err)
			}
		} else if err := writeFileAtomic(path, encodeRecord(record{kind: kindItem, version: v, key: op.Key, value: op.Value}), b.guard); err != nil {
			return fmt.Errorf("filestore: key %q: %w", op.Key, err)
		}
		if err := b.step(fmt.Sprintf("op %d applied", i)); err != nil {
			return err
		}
	}
	return syncDir(b.keys)
}

// finish completes a journaled commit: apply its ops, raise the counter to
// its version, then remove the journal. Every step is idempotent, so a
// crash anywhere leaves a journal that finish can run again.
func (b *Backend) finish(v storage.Version, ops []storage.Op) error {
	if err := b.apply(v, ops); err != nil {
		return err
	}
	counter, err := b.readCounter()
	if err != nil {
		return err
	}
	if counter < v {
		if err := b.writeCounter(v); err != nil {
			return err
		}
	}
	if err := b.step("counter updated"); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(b.dir, journalName)); err != nil {
		return fmt.Errorf("filestore: remove journal: %w", err)
	}
	return syncDir(b.dir)
}

// recover finishes a journaled commit left by a writer that crashed after
// its commit point. The caller holds the exclusive lock. A journal that
// does not decode is reported, never skipped: the journal's rename is
// atomic, so a damaged one is damage, not a torn write.
func (b *Backend) recover() error {
	path := filepath.Join(b.dir, journalName)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("filestore: read journal: %w", err)
	}
	r, err := decodeRecord(path, data, kindJournal)
	if err != nil {
		return err
	}
	ops, err := decodeOps(path, r.value)
	if err != nil {
		return err
	}
	return b.finish(r.version, ops)
}

// readItem reads key's file. A missing file is storage.ErrNotFound.
func (b *Backend) readItem(key string) (record, error) {
	path := filepath.Join(b.keys, keyFileName(key))
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		// Absent only if the store is still there: a volume unmounted
		// under a running process leaves an empty directory, in which
		// every key would look absent.
		if _, serr := os.Stat(filepath.Join(b.dir, counterName)); serr != nil {
			return record{}, fmt.Errorf("%w: get %q: %s: %v", ErrNoStore, key, b.dir, serr)
		}
		return record{}, fmt.Errorf("filestore: get %q: %w", key, storage.ErrNotFound)
	}
	if err != nil {
		return record{}, fmt.Errorf("filestore: read key %q: %w", key, err)
	}
	r, err := decodeRecord(path, data, kindItem)
	if err != nil {
		return record{}, fmt.Errorf("%w (reading key %q)", err, key)
	}
	if r.key != key {
		return record{}, fmt.Errorf("filestore: %s holds key %q, want %q: %w", path, r.key, key, storage.ErrCorrupt)
	}
	return r, nil
}

// readCounter returns the last version assigned. A missing counter file
// is an error matching both ErrNoStore and fs.ErrNotExist.
func (b *Backend) readCounter() (storage.Version, error) {
	path := filepath.Join(b.dir, counterName)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("%w: %s: %w", ErrNoStore, path, err)
	}
	if err != nil {
		return 0, fmt.Errorf("filestore: read version counter: %w", err)
	}
	r, err := decodeRecord(path, data, kindCounter)
	if err != nil {
		return 0, err
	}
	if len(r.value) != 0 {
		return 0, fmt.Errorf("filestore: %s: version counter has a %d-byte value: %w", path, len(r.value), storage.ErrCorrupt)
	}
	return r.version, nil
}

func (b *Backend) writeCounter(v storage.Version) error {
	if err := writeFileAtomic(filepath.Join(b.dir, counterName), encodeRecord(record{kind: kindCounter, version: v}), b.guard); err != nil {
		return err
	}
	return syncDir(b.dir)
}
