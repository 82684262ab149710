package replicate_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"strings"
	"testing"
	"time"

	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/storage/memstore"
)

func TestCheckpointRoundTrip(t *testing.T) {
	cases := []replicate.Checkpoint{
		{},
		{Pos: replicate.Position{1, 2, 3}, Token: 7, Time: time.Date(2026, 11, 22, 1, 2, 3, 456789, time.UTC)},
		{Pos: bytes.Repeat([]byte{0xff}, 300), State: []byte("open txn 42"), Token: 1<<64 - 1, Time: time.Unix(-5, 999999999).UTC()},
		{Pos: replicate.Position{4}, Token: 2, Time: time.Unix(7, 0).UTC(), Sink: "5f0c2a"},
	}
	for i, c := range cases {
		got, err := replicate.DecodeCheckpoint(replicate.EncodeCheckpoint(c))
		if err != nil {
			t.Fatalf("case %d: decode: %v", i, err)
		}
		if !bytes.Equal(got.Pos, c.Pos) || !bytes.Equal(got.State, c.State) || got.Token != c.Token || !got.Time.Equal(c.Time) || got.Sink != c.Sink {
			t.Fatalf("case %d: round trip gave %+v, want %+v", i, got, c)
		}
	}
}

func TestDecodeCheckpointRejects(t *testing.T) {
	good := replicate.EncodeCheckpoint(replicate.Checkpoint{Pos: replicate.Position{9}, Token: 3, Time: time.Unix(100, 0)})
	flip := func(i int) []byte { b := bytes.Clone(good); b[i] ^= 0x40; return b }
	future := bytes.Clone(good)
	future[4] = 3
	longPos := bytes.Clone(good)
	binary.BigEndian.PutUint32(longPos[25:], 1000)
	cases := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, replicate.ErrCorruptCheckpoint},
		{"magic", flip(0), replicate.ErrCorruptCheckpoint},
		{"future format", future, replicate.ErrCheckpointVersion},
		{"flipped token", flip(6), replicate.ErrCorruptCheckpoint},
		{"flipped pos", flip(29), replicate.ErrCorruptCheckpoint},
		{"flipped crc", flip(len(good) - 1), replicate.ErrCorruptCheckpoint},
		{"truncated", good[:len(good)-3], replicate.ErrCorruptCheckpoint},
		{"extended", append(bytes.Clone(good), 0), replicate.ErrCorruptCheckpoint},
		{"length past end", longPos, replicate.ErrCorruptCheckpoint},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := replicate.DecodeCheckpoint(tc.in)
			if !errors.Is(err, tc.want) {
				t.Fatalf("DecodeCheckpoint = %+v, %v; want error matching %v", c, err, tc.want)
			}
		})
	}
}

// A damaged checkpoint stops the stream with an error naming the key; it
// is never read as "start from the beginning".
func TestRunRefusesCorruptCheckpoint(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		value []byte
		want  error
	}{
		{"garbage", []byte("not a checkpoint"), replicate.ErrCorruptCheckpoint},
		{"future", append([]byte("hkcp\x09"), make([]byte, 40)...), replicate.ErrCheckpointVersion},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := memstore.New()
			if _, err := store.Put(ctx, 1, "cp/orders", tc.value); err != nil {
				t.Fatal(err)
			}
			s := newTestStream(store, "cp/orders")
			err := s.Run(ctx, 2)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), `"cp/orders"`) {
				t.Fatalf("Run = %v; want %v naming the key", err, tc.want)
			}
			if n := s.Sink.(interface{ Len() int }).Len(); n != 0 {
				t.Fatalf("sink got %d records from a stream with a corrupt checkpoint", n)
			}
		})
	}
}

// formatOne encodes c as format 1 did, before checkpoints recorded their
// sink: what a store written by an earlier release holds.
func formatOne(c replicate.Checkpoint) []byte {
	b := []byte("hkcp\x01")
	b = c.Token.AppendBinary(b)
	b = binary.BigEndian.AppendUint64(b, uint64(c.Time.Unix()))
	b = binary.BigEndian.AppendUint32(b, uint32(c.Time.Nanosecond()))
	b = binary.BigEndian.AppendUint32(b, uint32(len(c.Pos)))
	b = append(b, c.Pos...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(c.State)))
	b = append(b, c.State...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
}

// A checkpoint written by an earlier release (format 1) still decodes; it
// names no sink.
func TestDecodeCheckpointFormatOne(t *testing.T) {
	want := replicate.Checkpoint{Pos: replicate.Position{1, 2}, State: []byte("s"), Token: 5, Time: time.Unix(9, 8).UTC()}
	got, err := replicate.DecodeCheckpoint(formatOne(want))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Pos, want.Pos) || !bytes.Equal(got.State, want.State) || got.Token != want.Token || !got.Time.Equal(want.Time) || got.Sink != "" {
		t.Fatalf("format 1 decoded as %+v, want %+v", got, want)
	}
}

func FuzzDecodeCheckpoint(f *testing.F) {
	f.Add(replicate.EncodeCheckpoint(replicate.Checkpoint{}))
	f.Add(replicate.EncodeCheckpoint(replicate.Checkpoint{Pos: replicate.Position{1}, State: []byte("s"), Token: 9, Time: time.Unix(1, 2), Sink: "ab"}))
	f.Add(formatOne(replicate.Checkpoint{Pos: replicate.Position{1}, Token: 9, Time: time.Unix(1, 2)}))
	f.Add([]byte("hkcp\x01"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := replicate.DecodeCheckpoint(b)
		if err != nil {
			return
		}
		// Whatever decodes must re-encode to the same bytes (one
		// checkpoint, one encoding), or, from format 1, to the same
		// checkpoint.
		again := replicate.EncodeCheckpoint(c)
		if b[4] == 1 {
			if !bytes.Equal(formatOne(c), b) {
				t.Fatalf("format 1 %x decoded to %+v, which encodes as %x", b, c, formatOne(c))
			}
			return
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoding %x gave %x", b, again)
		}
	})
}
