package tcp

import (
	"bytes"
	"errors"
	"testing"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// FuzzReadFrame: the transport's frame and hello decoders never panic nor
// allocate beyond the limit, and a decoded frame is what was framed.
func FuzzReadFrame(f *testing.F) {
	hello := appendFrame(nil, encodeHello(1, 2))
	data, _ := proto.Marshal(&pb.Message{Type: pb.MsgHeartbeat.Enum(), From: new(uint64(1)), To: new(uint64(2)), Context: []byte("ctx")})
	f.Add(append(hello, appendFrame(nil, data)...))
	f.Add(hello)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 0, 7})
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		p, buf, err := readFrame(r, nil, helloLen)
		if err != nil {
			return
		}
		if len(p) > helloLen {
			t.Fatalf("frame of %d bytes beyond the limit %d", len(p), helloLen)
		}
		decodeHello(p)
		for {
			p, buf, err = readFrame(r, buf, 1<<16)
			if err != nil {
				return
			}
			if len(p) > 1<<16 {
				t.Fatalf("frame of %d bytes beyond the limit", len(p))
			}
			decodeMessage(p)
		}
	})
}

// FuzzHello: the hello decoder never panics, accepts only a hello that
// names two different, non-zero members, and what it accepts encodes
// back to the same bytes.
func FuzzHello(f *testing.F) {
	f.Add(encodeHello(1, 2))
	f.Add(encodeHello(2, 2))
	f.Add(encodeHello(0, 2))
	f.Add([]byte("HKRL"))
	f.Add(append([]byte("HKRL\x02"), make([]byte, 16)...))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, p []byte) {
		from, to, err := decodeHello(p)
		if err != nil {
			if !errors.Is(err, ErrFrame) {
				t.Fatalf("error %v does not wrap ErrFrame", err)
			}
			return
		}
		if from == 0 || to == 0 || from == to {
			t.Fatalf("accepted a hello from %x to %x", from, to)
		}
		if !bytes.Equal(encodeHello(from, to), p) {
			t.Fatalf("accepted hello %x re-encodes differently", p)
		}
	})
}
