package tcp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Wire format of the TCP transport. A connection carries frames in one
// direction, from the dialing member to the accepting one:
//
//	length u32 | CRC-32C of payload u32 | payload (length bytes)
//
// The first frame's payload is the hello, "HKRL" | version u8 | from u64 |
// to u64, naming the sender and the member it means to reach; every later
// payload is one protobuf-encoded raftpb.Message. The length is checked
// against the configured maximum before anything is allocated, so a peer
// cannot make the receiver reserve more than that.
const (
	frameHeaderLen = 8
	helloMagic     = "HKRL"
	helloVersion   = 1
	helloLen       = len(helloMagic) + 1 + 16
)

// DefaultMaxFrameBytes bounds one incoming message of the TCP transport,
// snapshots included: the store's snapshot must fit in it for a lagging
// or new member to catch up by snapshot.
const DefaultMaxFrameBytes = 64 << 20

// ErrFrame is wrapped by the errors of frames, hellos and messages that
// cannot be decoded.
var ErrFrame = errors.New("raftlease: corrupt frame")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// appendFrame appends payload p framed to b.
func appendFrame(b, p []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(p)))
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(p, castagnoli))
	return append(b, p...)
}

// readFrame reads one frame from r into buf (grown as needed, never
// beyond max) and returns its payload, which aliases buf.
func readFrame(r io.Reader, buf []byte, max int) ([]byte, []byte, error) {
	var hdr [frameHeaderLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, buf, err
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	if n == 0 || uint64(n) > uint64(max) {
		return nil, buf, fmt.Errorf("raftlease: frame: %w: length %d outside [1, %d]", ErrFrame, n, max)
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	p := buf[:n]
	if _, err := io.ReadFull(r, p); err != nil {
		return nil, buf, fmt.Errorf("raftlease: frame of %d bytes: %w", n, err)
	}
	if got, want := crc32.Checksum(p, castagnoli), binary.BigEndian.Uint32(hdr[4:]); got != want {
		return nil, buf, fmt.Errorf("raftlease: frame of %d bytes: %w: checksum %08x, header says %08x", n, ErrFrame, got, want)
	}
	return p, buf, nil
}

func encodeHello(from, to uint64) []byte {
	b := append([]byte(helloMagic), helloVersion)
	b = binary.BigEndian.AppendUint64(b, from)
	return binary.BigEndian.AppendUint64(b, to)
}

func decodeHello(p []byte) (from, to uint64, err error) {
	if len(p) != helloLen || string(p[:4]) != helloMagic {
		return 0, 0, fmt.Errorf("raftlease: hello: %w: not a hakit raft hello (%d bytes)", ErrFrame, len(p))
	}
	if p[4] != helloVersion {
		return 0, 0, fmt.Errorf("raftlease: hello: %w: version %d, want %d", ErrFrame, p[4], helloVersion)
	}
	from, to = binary.BigEndian.Uint64(p[5:13]), binary.BigEndian.Uint64(p[13:21])
	if from == 0 || to == 0 {
		return 0, 0, fmt.Errorf("raftlease: hello: %w: member 0", ErrFrame)
	}
	return from, to, nil
}

func decodeMessage(p []byte) (*pb.Message, error) {
	m := new(pb.Message)
	if err := proto.Unmarshal(p, m); err != nil {
		return nil, fmt.Errorf("raftlease: message of %d bytes: %w: %v", len(p), ErrFrame, err)
	}
	return m, nil
}
