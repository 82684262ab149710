package filesink

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/internal/wire"
)

// ErrCorrupt is wrapped by errors about a state file that cannot be
// decoded, or a data file that does not match its state.
var ErrCorrupt = errors.New("filesink: corrupt sink")

// State is what the state file records: the committed length of the data
// file, the position after the last committed record, the highest token
// admitted, the newest heartbeat, and the sink's identity.
type State struct {
	Length    uint64             // bytes of the data file that are committed
	Pos       replicate.Position // after the last committed record; nil: none
	Token     fence.Token        // highest token admitted; 0: none yet
	Heartbeat time.Time          // Time of the newest heartbeat applied (zero: none)
	HeartPos  replicate.Position // Pos of that heartbeat
	// SinkID is the sink's identity, made when the state file is
	// created (a state file of format 1 has none until Bind).
	SinkID string
	// Stream is the checkpoint key of the stream the sink is bound to;
	// "" until Bind.
	Stream string
}

var (
	stateMagic = []byte("hkfs")
	castagnoli = crc32.MakeTable(crc32.Castagnoli)
)

// stateFormat is the state file format version EncodeState writes;
// DecodeState also reads format 1, written before sinks had an identity.
const stateFormat = 2

// maxStateField bounds a position in a state file.
const maxStateField = 1 << 20

// maxIdentField bounds the sink ID and the stream key in a state file.
const maxIdentField = 4096

// Layout of format 2, big-endian:
//
//	magic[4] format[1] length[8] token[8] hbSec[8] hbNsec[4] posLen[4] pos hbPosLen[4] hbPos
//	sinkIDLen[4] sinkID streamLen[4] stream crc32c[4]
//
// Format 1 is the same without the sink ID and the stream.
const stateFixed = 4 + 1 + 8 + 8 + 8 + 4

// EncodeState returns the state file encoding of s.
func EncodeState(s State) []byte {
	b := make([]byte, 0, stateFixed+20+len(s.Pos)+len(s.HeartPos)+len(s.SinkID)+len(s.Stream))
	b = append(b, stateMagic...)
	b = append(b, stateFormat)
	b = binary.BigEndian.AppendUint64(b, s.Length)
	b = s.Token.AppendBinary(b)
	b = binary.BigEndian.AppendUint64(b, uint64(s.Heartbeat.Unix()))
	b = binary.BigEndian.AppendUint32(b, uint32(s.Heartbeat.Nanosecond()))
	b = wire.AppendField(b, s.Pos)
	b = wire.AppendField(b, s.HeartPos)
	b = wire.AppendField(b, []byte(s.SinkID))
	b = wire.AppendField(b, []byte(s.Stream))
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// DecodeState decodes a state file. Anything but an exact, checksummed
// encoding of format 1 or 2 is an error wrapping ErrCorrupt.
func DecodeState(b []byte) (State, error) {
	if len(b) < stateFixed+12 {
		return State{}, fmt.Errorf("%w: state of %d bytes, want at least %d", ErrCorrupt, len(b), stateFixed+12)
	}
	if !bytes.Equal(b[:4], stateMagic) {
		return State{}, fmt.Errorf("%w: magic %q, want %q", ErrCorrupt, b[:4], stateMagic)
	}
	format := b[4]
	if format != 1 && format != stateFormat {
		return State{}, fmt.Errorf("%w: state format %d, this code reads 1 to %d", ErrCorrupt, format, stateFormat)
	}
	body := b[:len(b)-4]
	if got, want := crc32.Checksum(body, castagnoli), binary.BigEndian.Uint32(b[len(b)-4:]); got != want {
		return State{}, fmt.Errorf("%w: state checksum %08x, computed %08x", ErrCorrupt, want, got)
	}
	var s State
	s.Length = binary.BigEndian.Uint64(body[5:])
	s.Token = fence.Token(binary.BigEndian.Uint64(body[13:]))
	sec, nsec := int64(binary.BigEndian.Uint64(body[21:])), binary.BigEndian.Uint32(body[29:])
	if nsec >= 1e9 {
		return State{}, fmt.Errorf("%w: heartbeat nanoseconds %d out of range", ErrCorrupt, nsec)
	}
	s.Heartbeat = time.Unix(sec, int64(nsec)).UTC()
	rest := body[stateFixed:]
	var err error
	if s.Pos, rest, err = wire.CutField(rest, "position", maxStateField, ErrCorrupt); err != nil {
		return State{}, err
	}
	if s.HeartPos, rest, err = wire.CutField(rest, "heartbeat position", maxStateField, ErrCorrupt); err != nil {
		return State{}, err
	}
	if format >= 2 {
		var id, stream []byte
		if id, rest, err = wire.CutField(rest, "sink ID", maxIdentField, ErrCorrupt); err != nil {
			return State{}, err
		}
		if stream, rest, err = wire.CutField(rest, "stream", maxIdentField, ErrCorrupt); err != nil {
			return State{}, err
		}
		s.SinkID, s.Stream = string(id), string(stream)
	}
	if len(rest) != 0 {
		return State{}, fmt.Errorf("%w: %d trailing bytes in state", ErrCorrupt, len(rest))
	}
	return s, nil
}
