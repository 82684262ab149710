package etcdstore_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/storage/etcdstore"
	"github.com/hakit/hakit/storage/etcdstore/etcdtest"
)

// FuzzDecodeFence checks the record decoder on arbitrary bytes: it accepts
// exactly the 8-byte records of non-zero tokens, and round-trips them.
func FuzzDecodeFence(f *testing.F) {
	for _, seed := range [][]byte{
		nil, {}, {0}, etcdstore.EncodeFence(1), etcdstore.EncodeFence(1 << 40),
		bytes.Repeat([]byte{0xff}, 8), make([]byte, 8), make([]byte, 9), []byte("12345678"),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		tok, err := etcdstore.DecodeFence(b)
		valid := len(b) == 8 && !bytes.Equal(b, bytes.Repeat([]byte{0xff}, 8))
		if (err == nil) != valid {
			t.Fatalf("DecodeFence(%x) = %d, %v; want success %v", b, tok, err, valid)
		}
		if err != nil {
			if tok != 0 {
				t.Fatalf("DecodeFence(%x) failed but returned token %d", b, tok)
			}
			return
		}
		if got := etcdstore.EncodeFence(tok); !bytes.Equal(got, b) {
			t.Fatalf("EncodeFence(DecodeFence(%x)) = %x", b, got)
		}
	})
}

// FuzzFenceAdmission stores arbitrary bytes as the fence record in a real
// etcd and writes with an arbitrary token. A well-formed record must admit
// exactly the tokens up to its own. A damaged one may be refused (an error
// naming it), or admitted only if every token it could be a truncation or
// extension of is at most the writer's: damage never lets a stale writer
// through.
func FuzzFenceAdmission(f *testing.F) {
	big := fence.Token(0x0102030405060708)
	seeds := []struct {
		record []byte
		token  uint64
	}{
		{etcdstore.EncodeFence(5), 5},
		{etcdstore.EncodeFence(5), 4},
		{etcdstore.EncodeFence(5), 6},
		{etcdstore.EncodeFence(big)[:3], uint64(big - 1)},
		{etcdstore.EncodeFence(big)[:3], uint64(big + 1)},
		{append(etcdstore.EncodeFence(9), 1, 2), 8},
		{append(etcdstore.EncodeFence(9), 1, 2), 9},
		{nil, 1},
		{bytes.Repeat([]byte{0xff}, 8), 3},
		{[]byte("42"), 42},
		{etcdstore.EncodeFence(1), ^uint64(0)},
	}
	for _, s := range seeds {
		f.Add(s.record, s.token)
	}
	srv := etcdtest.Start(f)
	cli := srv.Client(f)
	f.Fuzz(func(t *testing.T, record []byte, token uint64) {
		tok := fence.Token(token)
		if tok == 0 {
			return
		}
		prefix := freshPrefix(t)
		fk := prefix + etcdstore.FenceKey
		if _, err := cli.Put(t.Context(), fk, string(record)); err != nil {
			t.Fatal(err)
		}
		_, err := etcdstore.New(cli, prefix).Put(t.Context(), tok, "k", []byte("v"))

		if held, derr := etcdstore.DecodeFence(record); derr == nil {
			if held > tok {
				var se *fence.StaleError
				if !errors.As(err, &se) || se.High != held || se.Token != tok {
					t.Fatalf("record of %d, token %d: %v, want a stale error naming both", held, tok, err)
				}
			} else if err != nil {
				t.Fatalf("record of %d, token %d: %v, want success", held, tok, err)
			}
			return
		}
		if err != nil {
			if !errors.Is(err, etcdstore.ErrCorruptFence) {
				t.Fatalf("damaged record %x, token %d: %v, want etcdstore.ErrCorruptFence", record, tok, err)
			}
			return
		}
		// Admitted: the largest token the damaged record can stand for
		// must not exceed tok. Records are complemented, so the largest
		// token with a given prefix has the prefix padded with zeros.
		padded := make([]byte, 8)
		copy(padded, record)
		if most := ^fence.Token(binary.BigEndian.Uint64(padded)); most > tok {
			t.Fatalf("damaged record %x (could hold token %d) admitted token %d", record, most, tok)
		}
	})
}
