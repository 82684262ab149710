package replicate

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/replicate/internal/wire"
	"github.com/hakit/hakit/storage"
)

var (
	// ErrCorruptCheckpoint is wrapped by every error about a stored
	// checkpoint that cannot be decoded: wrong magic, wrong length or a
	// checksum mismatch. The error names the key. A Stream that meets one
	// stops; it never treats it as "no checkpoint" and restarts from the
	// beginning.
	ErrCorruptCheckpoint = errors.New("replicate: corrupt checkpoint")
	// ErrCheckpointVersion is wrapped by the error for a checkpoint written
	// in a format version this code does not know (typically by a newer
	// release). The error names the key and the version.
	ErrCheckpointVersion = errors.New("replicate: unknown checkpoint format version")
)

// checkpointMagic starts every encoded checkpoint; CheckpointFormat follows it.
var checkpointMagic = [4]byte{'h', 'k', 'c', 'p'}

// CheckpointFormat is the format version EncodeCheckpoint writes.
// DecodeCheckpoint also reads format 1, written before checkpoints
// recorded their sink.
const CheckpointFormat = 2

// Layout of format 2, all integers big-endian:
//
//	magic[4] format[1] token[8] unixSec[8] nanos[4] posLen[4] pos stateLen[4] state sinkLen[4] sink crc32c[4]
//
// Format 1 is the same without sinkLen and sink. The CRC-32C (Castagnoli)
// covers every byte before it. Lengths are fixed width so that one
// Checkpoint has exactly one encoding.
const (
	cpHeaderLen = 4 + 1 + 8 + 8 + 4
	cpMinLen    = cpHeaderLen + 4 + 4 + 4
	// MaxCheckpointField bounds Pos and State, so that a damaged length
	// cannot make the decoder allocate without limit.
	MaxCheckpointField = 64 << 20
	// MaxSinkID bounds Checkpoint.Sink.
	MaxSinkID = 256
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// EncodeCheckpoint returns the binary encoding of c in format
// CheckpointFormat: magic, version, token, time, length-prefixed position,
// state and sink ID, and a CRC-32C over all of it. The time keeps
// nanoseconds and is decoded in UTC. It panics if Pos or State exceeds
// MaxCheckpointField or Sink exceeds MaxSinkID, which no Source or sink
// should produce.
func EncodeCheckpoint(c Checkpoint) []byte {
	if len(c.Pos) > MaxCheckpointField || len(c.State) > MaxCheckpointField || len(c.Sink) > MaxSinkID {
		panic(fmt.Sprintf("replicate: checkpoint position (%d bytes), state (%d bytes) or sink ID (%d bytes) too long", len(c.Pos), len(c.State), len(c.Sink)))
	}
	b := make([]byte, 0, cpMinLen+4+len(c.Pos)+len(c.State)+len(c.Sink))
	b = append(b, checkpointMagic[:]...)
	b = append(b, CheckpointFormat)
	b = c.Token.AppendBinary(b)
	b = binary.BigEndian.AppendUint64(b, uint64(c.Time.Unix()))
	b = binary.BigEndian.AppendUint32(b, uint32(c.Time.Nanosecond()))
	b = wire.AppendField(b, c.Pos)
	b = wire.AppendField(b, c.State)
	b = wire.AppendField(b, []byte(c.Sink))
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// DecodeCheckpoint decodes what EncodeCheckpoint produced, in format 1 or
// CheckpointFormat (a format 1 checkpoint has no Sink). It fails on a
// wrong magic, a length that does not add up, a checksum mismatch
// (ErrCorruptCheckpoint) or another format version (ErrCheckpointVersion).
// It never returns a zero Checkpoint for damaged input. An empty Pos or
// State decodes as nil. The returned slices do not alias b.
func DecodeCheckpoint(b []byte) (Checkpoint, error) {
	if len(b) < 5 {
		return Checkpoint{}, fmt.Errorf("%w: %d bytes, shorter than any checkpoint", ErrCorruptCheckpoint, len(b))
	}
	if !bytes.Equal(b[:4], checkpointMagic[:]) {
		return Checkpoint{}, fmt.Errorf("%w: magic %q, want %q", ErrCorruptCheckpoint, b[:4], checkpointMagic[:])
	}
	format := b[4]
	if format != 1 && format != CheckpointFormat {
		return Checkpoint{}, fmt.Errorf("%w: format %d, this code reads 1 to %d", ErrCheckpointVersion, format, CheckpointFormat)
	}
	if len(b) < cpMinLen {
		return Checkpoint{}, fmt.Errorf("%w: %d bytes, want at least %d", ErrCorruptCheckpoint, len(b), cpMinLen)
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if got := crc32.Checksum(body, castagnoli); got != sum {
		return Checkpoint{}, fmt.Errorf("%w: checksum %08x, computed %08x", ErrCorruptCheckpoint, sum, got)
	}
	var c Checkpoint
	c.Token = fence.Token(binary.BigEndian.Uint64(body[5:13]))
	sec := int64(binary.BigEndian.Uint64(body[13:21]))
	nsec := binary.BigEndian.Uint32(body[21:25])
	if nsec >= 1e9 {
		return Checkpoint{}, fmt.Errorf("%w: nanoseconds field %d out of range", ErrCorruptCheckpoint, nsec)
	}
	c.Time = time.Unix(sec, int64(nsec)).UTC()
	rest := body[cpHeaderLen:]
	var err error
	if c.Pos, rest, err = wire.CutField(rest, "position", MaxCheckpointField, ErrCorruptCheckpoint); err != nil {
		return Checkpoint{}, err
	}
	if c.State, rest, err = wire.CutField(rest, "state", MaxCheckpointField, ErrCorruptCheckpoint); err != nil {
		return Checkpoint{}, err
	}
	if format >= 2 {
		var sink []byte
		if sink, rest, err = wire.CutField(rest, "sink ID", MaxSinkID, ErrCorruptCheckpoint); err != nil {
			return Checkpoint{}, err
		}
		c.Sink = string(sink)
	}
	if len(rest) != 0 {
		return Checkpoint{}, fmt.Errorf("%w: %d trailing bytes", ErrCorruptCheckpoint, len(rest))
	}
	return c, nil
}

// LoadCheckpoint reads and decodes the checkpoint stored under key. A key
// that does not exist gives the zero Checkpoint, version 0 and no error:
// that, and only that, means "start at the beginning". Any decoding
// failure is an error that names the key and wraps ErrCorruptCheckpoint or
// ErrCheckpointVersion.
func LoadCheckpoint(ctx context.Context, s storage.Store, key string) (Checkpoint, storage.Version, error) {
	it, err := s.Get(ctx, key)
	if errors.Is(err, storage.ErrNotFound) {
		return Checkpoint{}, 0, nil
	}
	if err != nil {
		return Checkpoint{}, 0, fmt.Errorf("replicate: read checkpoint %q: %w", key, err)
	}
	c, err := DecodeCheckpoint(it.Value)
	if err != nil {
		return Checkpoint{}, 0, fmt.Errorf("replicate: checkpoint %q (version %d): %w", key, it.Version, err)
	}
	return c, it.Version, nil
}
