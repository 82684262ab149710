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
// admitted and the newest heartbeat.
type State struct {
	Length    uint64             // bytes of the data file that are committed
	Pos       replicate.Position // after the last committed record; nil: none
	Token     fence.Token        // highest token admitted; 0: none yet
	Heartbeat time.Time          // Time of the newest heartbeat applied (zero: none)
	HeartPos  replicate.Position // Pos of that heartbeat
}

var (
	stateMagic = []byte("hkfs")
	castagnoli = crc32.MakeTable(crc32.Castagnoli)
)

// stateFormat is the state file format version.
const stateFormat = 1

// maxStateField bounds a position in a state file.
const maxStateField = 1 << 20

// Layout, big-endian:
//
//	magic[4] format[1] length[8] token[8] hbSec[8] hbNsec[4] posLen[4] pos hbPosLen[4] hbPos crc32c[4]
const stateFixed = 4 + 1 + 8 + 8 + 8 + 4

// EncodeState returns the state file encoding of s.
func EncodeState(s State) []byte {
	b := make([]byte, 0, stateFixed+12+len(s.Pos)+len(s.HeartPos))
	b = append(b, stateMagic...)
	b = append(b, stateFormat)
	b = binary.BigEndian.AppendUint64(b, s.Length)
	b = s.Token.AppendBinary(b)
	b = binary.BigEndian.AppendUint64(b, uint64(s.Heartbeat.Unix()))
	b = binary.BigEndian.AppendUint32(b, uint32(s.Heartbeat.Nanosecond()))
	b = wire.AppendField(b, s.Pos)
	b = wire.AppendField(b, s.HeartPos)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// DecodeState decodes a state file. Anything but an exact, checksummed
// encoding of format 1 is an error wrapping ErrCorrupt.
func DecodeState(b []byte) (State, error) {
	if len(b) < stateFixed+12 {
		return State{}, fmt.Errorf("%w: state of %d bytes, want at least %d", ErrCorrupt, len(b), stateFixed+12)
	}
	if !bytes.Equal(b[:4], stateMagic) {
		return State{}, fmt.Errorf("%w: magic %q, want %q", ErrCorrupt, b[:4], stateMagic)
	}
	if b[4] != stateFormat {
		return State{}, fmt.Errorf("%w: state format %d, this code reads %d", ErrCorrupt, b[4], stateFormat)
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
	if len(rest) != 0 {
		return State{}, fmt.Errorf("%w: %d trailing bytes in state", ErrCorrupt, len(rest))
	}
	return s, nil
}
