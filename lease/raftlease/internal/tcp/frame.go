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
// against the configured maximum first, and the buffer grows only as the
// payload's bytes arrive, so a peer that declares a large frame and sends
// nothing makes the receiver reserve no more than one read chunk.
const (
	frameHeaderLen = 8
	helloMagic     = "HKRL"
	helloVersion   = 1
	helloLen       = len(helloMagic) + 1 + 16

	// readChunk is the first growth step of a frame buffer; it doubles
	// with every chunk that arrives.
	readChunk = 64 << 10
	// keepBuffer is the largest frame buffer kept between frames: the
	// buffer of a large frame (a snapshot) is let go once it is decoded.
	keepBuffer = 1 << 20
)

// DefaultMaxFrameBytes bounds one message of the TCP transport, snapshots
// included: the store's snapshot must fit in it for a lagging or new
// member to catch up by snapshot.
const DefaultMaxFrameBytes = 16 << 20

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

// appendMessageFrame appends m, encoded and framed, to b without an
// intermediate copy of the encoding.
func appendMessageFrame(b []byte, m *pb.Message) ([]byte, error) {
	start := len(b)
	b = append(b, make([]byte, frameHeaderLen)...)
	b, err := proto.MarshalOptions{}.MarshalAppend(b, m)
	if err != nil {
		return b[:start], err
	}
	p := b[start+frameHeaderLen:]
	binary.BigEndian.PutUint32(b[start:], uint32(len(p)))
	binary.BigEndian.PutUint32(b[start+4:], crc32.Checksum(p, castagnoli))
	return b, nil
}

// readHeader reads a frame header and returns the payload length it
// declares, refusing one outside [1, max].
func readHeader(r io.Reader, max int) (n int, sum uint32, err error) {
	var hdr [frameHeaderLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, 0, err
	}
	l := binary.BigEndian.Uint32(hdr[:4])
	if l == 0 || uint64(l) > uint64(max) {
		return 0, 0, fmt.Errorf("raftlease: frame: %w: length %d outside [1, %d]", ErrFrame, l, max)
	}
	return int(l), binary.BigEndian.Uint32(hdr[4:]), nil
}

// readPayload reads the n-byte payload of a frame whose header gave sum
// into buf, growing it as bytes arrive, and checks it. The payload
// aliases the returned buffer.
func readPayload(r io.Reader, buf []byte, n int, sum uint32) ([]byte, []byte, error) {
	buf = buf[:0]
	for len(buf) < n {
		chunk := min(n-len(buf), max(readChunk, len(buf)))
		if cap(buf)-len(buf) < chunk {
			nb := make([]byte, len(buf), len(buf)+chunk)
			copy(nb, buf)
			buf = nb
		}
		k, err := io.ReadFull(r, buf[len(buf):len(buf)+chunk])
		buf = buf[:len(buf)+k]
		if err != nil {
			return nil, buf, fmt.Errorf("raftlease: frame of %d bytes, %d read: %w", n, len(buf), err)
		}
	}
	if got := crc32.Checksum(buf, castagnoli); got != sum {
		return nil, buf, fmt.Errorf("raftlease: frame of %d bytes: %w: checksum %08x, header says %08x", n, ErrFrame, got, sum)
	}
	return buf, buf, nil
}

// readFrame reads one frame of at most max payload bytes from r into buf
// and returns its payload, which aliases the returned buffer.
func readFrame(r io.Reader, buf []byte, max int) ([]byte, []byte, error) {
	n, sum, err := readHeader(r, max)
	if err != nil {
		return nil, buf, err
	}
	return readPayload(r, buf, n, sum)
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
	if from == to {
		return 0, 0, fmt.Errorf("raftlease: hello: %w: member %x says hello to itself", ErrFrame, from)
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
