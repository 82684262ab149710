package filestore

import (
	"bytes"
	"errors"
	"testing"

	"github.com/hakit/hakit/storage"
)

// FuzzDecodeRecord feeds arbitrary file contents to the record decoder.
// It must never panic; whatever it accepts must re-encode to the same
// bytes; whatever it refuses must be refused with storage.ErrCorrupt.
func FuzzDecodeRecord(f *testing.F) {
	seeds := []record{
		{kind: kindItem, version: 1, key: "k", value: []byte("v")},
		{kind: kindItem, version: 1 << 40, key: "ünï/../x", value: nil},
		{kind: kindCounter, version: 0},
		{kind: kindCounter, version: 99},
		{kind: kindJournal, version: 7, value: encodeOps([]storage.Op{{Key: "a", Value: []byte("1")}, {Key: "b", Delete: true}})},
	}
	for _, r := range seeds {
		enc := encodeRecord(r)
		f.Add(byte(r.kind), enc)
		f.Add(byte(r.kind), enc[:len(enc)-1])
		flipped := append([]byte{}, enc...)
		flipped[len(flipped)/2] ^= 4
		f.Add(byte(r.kind), flipped)
	}
	f.Add(byte(kindItem), []byte{})
	f.Add(byte(kindItem), []byte("hkfs\x01\x01\x00\x00"))
	f.Fuzz(func(t *testing.T, k byte, data []byte) {
		want := kind(k%3 + 1)
		r, err := decodeRecord("fuzz", data, want)
		if err != nil {
			if !errors.Is(err, storage.ErrCorrupt) {
				t.Fatalf("decodeRecord error %v does not match storage.ErrCorrupt", err)
			}
			return
		}
		if r.kind != want {
			t.Fatalf("decoded a %s, asked for a %s", r.kind, want)
		}
		if enc := encodeRecord(r); !bytes.Equal(enc, data) {
			t.Fatalf("decoded record re-encodes to %x, not %x", enc, data)
		}
	})
}

// FuzzDecodeOps feeds arbitrary journal op lists to their decoder.
func FuzzDecodeOps(f *testing.F) {
	f.Add(encodeOps(nil))
	f.Add(encodeOps([]storage.Op{{Key: "a", Value: []byte("1")}}))
	f.Add(encodeOps([]storage.Op{{Key: "a", Value: []byte("1")}, {Key: "b", Delete: true}, {Key: "c", Value: nil}}))
	f.Add(encodeOps([]storage.Op{{Key: "a"}, {Key: "a"}}))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0, 0, 0, 1, 1, 0, 0, 0, 9})
	f.Fuzz(func(t *testing.T, data []byte) {
		ops, err := decodeOps("fuzz", data)
		if err != nil {
			if !errors.Is(err, storage.ErrCorrupt) {
				t.Fatalf("decodeOps error %v does not match storage.ErrCorrupt", err)
			}
			return
		}
		if err := storage.CheckCommit(nil, ops); err != nil {
			t.Fatalf("decodeOps accepted ops that CheckCommit refuses: %v", err)
		}
		if enc := encodeOps(ops); !bytes.Equal(enc, data) {
			t.Fatalf("decoded ops re-encode to %x, not %x", enc, data)
		}
	})
}
