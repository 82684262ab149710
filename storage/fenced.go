package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"sync"

	"github.com/hakit/hakit/fence"
)

// DefaultFenceKey is the key under which Fenced keeps its fence record
// unless WithFenceKey names another.
const DefaultFenceKey = "hakit/fence"

// Option configures Fenced.
type Option func(*fencedOptions)

type fencedOptions struct {
	fenceKey string
}

// WithFenceKey keeps the fence record under key instead of DefaultFenceKey.
// Stores over the same backend with different fence keys are fenced
// independently. The key is reserved: Get and writes on it are refused.
func WithFenceKey(key string) Option {
	return func(o *fencedOptions) { o.fenceKey = key }
}

// Fenced returns a Store that fences every write to b. It keeps the highest
// admitted token in a fence record in b and commits each write together
// with the conditions "fence <= token" and, where the token is larger,
// "fence := token", in one Backend.Commit; a commit that lost a race with
// a concurrent writer is retried after re-reading the fence.
//
// In the steady state (one writer, one token) each write is a single
// Commit: Fenced remembers the fence record's version and conditions the
// commit on it, and re-reads only when that condition fails. A fence record
// that cannot be decoded is an error naming its key; it is never read as
// "no fence".
//
// Every process that writes to the same data must go through Fenced with
// the same fence key; a direct Backend write bypasses the fence.
func Fenced(b Backend, opts ...Option) Store {
	o := fencedOptions{fenceKey: DefaultFenceKey}
	for _, opt := range opts {
		opt(&o)
	}
	return &fencedStore{b: b, key: o.fenceKey}
}

type fencedStore struct {
	b   Backend
	key string

	mu     sync.Mutex
	known  bool          // whether cached reflects a read or a commit
	cached fenceSnapshot // the fence record as last seen
}

type fenceSnapshot struct {
	version Version
	token   fence.Token
}

func (s *fencedStore) Get(ctx context.Context, key string) (Item, error) {
	if err := s.checkKey(key); err != nil {
		return Item{}, err
	}
	return s.b.Get(ctx, key)
}

func (s *fencedStore) Put(ctx context.Context, t fence.Token, key string, value []byte) (Version, error) {
	return s.write(ctx, t, key, nil, Op{Key: key, Value: value})
}

func (s *fencedStore) CompareAndSwap(ctx context.Context, t fence.Token, key string, old Version, value []byte) (Version, error) {
	return s.write(ctx, t, key, &Cond{Key: key, Version: old}, Op{Key: key, Value: value})
}

func (s *fencedStore) Delete(ctx context.Context, t fence.Token, key string) error {
	_, err := s.write(ctx, t, key, nil, Op{Key: key, Delete: true})
	return err
}

func (s *fencedStore) checkKey(key string) error {
	if err := ValidateKey(key); err != nil {
		return err
	}
	if key == s.key {
		return fmt.Errorf("%w: %q is reserved for the fence record", ErrInvalidKey, key)
	}
	return nil
}

func (s *fencedStore) write(ctx context.Context, t fence.Token, key string, keyCond *Cond, op Op) (Version, error) {
	if t == 0 {
		return 0, fence.ErrNoToken
	}
	if err := s.checkKey(key); err != nil {
		return 0, err
	}
	snap, err := s.snapshot(ctx)
	if err != nil {
		return 0, err
	}
	for {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		// Tokens only grow, so a cached fence above t proves t stale.
		if t < snap.token {
			return 0, fence.Stale(t, snap.token)
		}
		conds := []Cond{{Key: s.key, Version: snap.version}}
		if keyCond != nil {
			conds = append(conds, *keyCond)
		}
		ops := []Op{op}
		if t > snap.token {
			ops = append(ops, Op{Key: s.key, Value: encodeFence(t)})
		}
		v, err := s.b.Commit(ctx, conds, ops)
		if err == nil {
			if t > snap.token {
				s.remember(fenceSnapshot{version: v, token: t})
			}
			return v, nil
		}
		if !errors.Is(err, ErrConflict) {
			return 0, err
		}
		// Either the fence moved (re-read and retry) or, for a
		// compare-and-swap, the key's version did not match.
		fresh, rerr := s.reload(ctx)
		if rerr != nil {
			return 0, rerr
		}
		if fresh == snap {
			if keyCond != nil {
				return 0, fmt.Errorf("%w: key %q is not at version %d", ErrConflict, key, keyCond.Version)
			}
			// Versions are never reused, so an unchanged fence record
			// means the commit's only condition held: the backend broke
			// its contract, or something wrote the fence record around
			// Fenced. Retrying could spin forever.
			return 0, fmt.Errorf("storage: write %q: commit conflicted although fence record %q is unchanged at version %d: %w", key, s.key, snap.version, err)
		}
		snap = fresh
	}
}

// snapshot returns the cached fence record, reading it on first use.
func (s *fencedStore) snapshot(ctx context.Context) (fenceSnapshot, error) {
	s.mu.Lock()
	snap, known := s.cached, s.known
	s.mu.Unlock()
	if known {
		return snap, nil
	}
	return s.reload(ctx)
}

// reload reads the fence record from the backend and caches it.
func (s *fencedStore) reload(ctx context.Context) (fenceSnapshot, error) {
	it, err := s.b.Get(ctx, s.key)
	var snap fenceSnapshot
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return fenceSnapshot{}, fmt.Errorf("storage: read fence record %q: %w", s.key, err)
	default:
		tok, derr := DecodeFence(it.Value)
		if derr != nil {
			return fenceSnapshot{}, fmt.Errorf("storage: fence record %q: %w", s.key, derr)
		}
		snap = fenceSnapshot{version: it.Version, token: tok}
	}
	s.remember(snap)
	return snap, nil
}

// remember caches snap. A cache that a concurrent writer made out of date
// costs one failed commit and a re-read, never a wrong answer: the fence
// record's version is a condition of every commit.
func (s *fencedStore) remember(snap fenceSnapshot) {
	s.mu.Lock()
	s.cached, s.known = snap, true
	s.mu.Unlock()
}

// fenceMagic starts every fence record; the trailing byte is the format
// version.
var fenceMagic = []byte("hkf\x01")

const fenceRecordLen = 4 + fence.EncodedLen + 4

// encodeFence encodes the fence record for t: magic, token, CRC-32C of both.
func encodeFence(t fence.Token) []byte {
	b := make([]byte, 0, fenceRecordLen)
	b = append(b, fenceMagic...)
	b = t.AppendBinary(b)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// DecodeFence decodes a fence record as Fenced stores it. It fails with an
// error wrapping ErrCorrupt and naming the problem on a wrong length, an
// unknown magic or format version, or a checksum mismatch; it never
// returns token 0 for a damaged record.
func DecodeFence(b []byte) (fence.Token, error) {
	if len(b) != fenceRecordLen {
		return 0, fmt.Errorf("%w: fence record has %d bytes, want %d", ErrCorrupt, len(b), fenceRecordLen)
	}
	if !bytes.Equal(b[:3], fenceMagic[:3]) {
		return 0, fmt.Errorf("%w: fence record has magic %q, want %q", ErrCorrupt, b[:3], fenceMagic[:3])
	}
	if b[3] != fenceMagic[3] {
		return 0, fmt.Errorf("%w: fence record has format version %d, want %d", ErrCorrupt, b[3], fenceMagic[3])
	}
	body, sum := b[:fenceRecordLen-4], b[fenceRecordLen-4:]
	if got, want := crc32.Checksum(body, castagnoli), binary.BigEndian.Uint32(sum); got != want {
		return 0, fmt.Errorf("%w: fence record checksum %08x does not match its contents (%08x)", ErrCorrupt, want, got)
	}
	return fence.Decode(body[4:])
}
