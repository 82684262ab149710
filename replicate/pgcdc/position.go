package pgcdc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/jackc/pglogrepl"

	"github.com/hakit/hakit/replicate"
)

// LSN is a PostgreSQL write-ahead log position. It prints in PostgreSQL's
// X/X form.
type LSN = pglogrepl.LSN

// ErrPosition is wrapped by the error for a replicate.Position that is not
// one this package wrote, or cannot be resumed from.
var ErrPosition = errors.New("pgcdc: bad position")

// lastFlag marks, in a position's sequence number, the last change of its
// transaction: resuming there starts after the transaction.
const lastFlag = 1 << 63

// posLen is the length of a stream position; a longer one carries the
// initial load's state after it.
const posLen = 16

// Pos is a decoded position. Positions are compared as (LSN, Seq), which
// is the order of the changes in the stream.
//
// The encoding is 16 bytes, the LSN and the sequence number big-endian,
// optionally followed by the initial load's state:
//
//   - a change: LSN is the end of its transaction's commit record (the
//     COMMIT message's end LSN), Seq its 1-based index in the
//     transaction, with the top bit set on the transaction's last change;
//   - progress: LSN is a position the server reported with nothing for
//     the publication before it, Seq has only the top bit set;
//   - a row of the initial load: LSN is where streaming starts after the
//     load, Seq counts the rows copied, and the load's state follows.
type Pos struct {
	LSN  LSN
	Seq  uint64 // without the last-change flag
	Last bool   // the last change of its transaction, or progress: a resume point
	Load []byte // the initial load's state; nil outside the load
}

// Encode returns the position's bytes.
func (p Pos) Encode() replicate.Position {
	b := make([]byte, posLen, posLen+len(p.Load))
	binary.BigEndian.PutUint64(b, uint64(p.LSN))
	seq := p.Seq &^ lastFlag
	if p.Last {
		seq |= lastFlag
	}
	binary.BigEndian.PutUint64(b[8:], seq)
	return append(b, p.Load...)
}

// String prints the position as LSN#seq, with "!" after the last change
// of a transaction and "+load" during the initial load.
func (p Pos) String() string {
	s := fmt.Sprintf("%s#%d", p.LSN, p.Seq)
	if p.Last {
		s += "!"
	}
	if p.Load != nil {
		s += "+load"
	}
	return s
}

// DecodePos decodes a position written by this package. A nil or empty
// position is the zero Pos (the beginning).
func DecodePos(b replicate.Position) (Pos, error) {
	if len(b) == 0 {
		return Pos{}, nil
	}
	if len(b) < posLen {
		return Pos{}, fmt.Errorf("%w: %d bytes, want at least %d", ErrPosition, len(b), posLen)
	}
	seq := binary.BigEndian.Uint64(b[8:])
	p := Pos{LSN: LSN(binary.BigEndian.Uint64(b)), Seq: seq &^ lastFlag, Last: seq&lastFlag != 0}
	if len(b) > posLen {
		p.Load = bytes.Clone(b[posLen:])
	}
	return p, nil
}

// FormatPos prints a replicate.Position of this package for logs and
// errors: LSN#seq (see Pos.String), "beginning" for nil, or the bytes in
// hexadecimal if they are not a position of this package.
func FormatPos(b replicate.Position) string {
	if len(b) == 0 {
		return "beginning"
	}
	p, err := DecodePos(b)
	if err != nil {
		return fmt.Sprintf("%x", []byte(b))
	}
	return p.String()
}

// Compare orders positions of this package as (LSN, sequence number), the
// order of the stream; nil is first (replicate.Comparer). The initial
// load's state does not take part.
func Compare(a, b replicate.Position) int {
	return bytes.Compare(a[:min(len(a), posLen)], b[:min(len(b), posLen)])
}

// setPositions gives recs, one transaction's changes ending at end, their
// positions: (end, 1), (end, 2), ..., the last one flagged and carrying
// state (the initial load's, or nil).
func setPositions(recs []replicate.Record, end LSN, state []byte) {
	buf := make([]byte, posLen*len(recs)+len(state))
	for i := range recs {
		p := buf[i*posLen : (i+1)*posLen : (i+1)*posLen]
		binary.BigEndian.PutUint64(p, uint64(end))
		seq := uint64(i + 1)
		if i == len(recs)-1 {
			seq |= lastFlag
			p = buf[i*posLen:]
			copy(p[posLen:], state)
		}
		binary.BigEndian.PutUint64(p[8:], seq)
		recs[i].Pos = p
	}
}
