package storage

import (
	"bytes"
	"errors"
	"testing"

	"github.com/hakit/hakit/fence"
)

// FuzzDecodeFence checks that a fence record decodes only when intact:
// anything accepted re-encodes to the same bytes, and anything else is an
// error matching ErrCorrupt, never token 0.
func FuzzDecodeFence(f *testing.F) {
	for _, tok := range []fence.Token{0, 1, 7, 1 << 40, ^fence.Token(0)} {
		f.Add(encodeFence(tok))
	}
	damaged := encodeFence(5)
	damaged[6] ^= 1
	f.Add(damaged)
	f.Add([]byte{})
	f.Add([]byte("hkf\x02\x00\x00\x00\x00\x00\x00\x00\x05\x00\x00\x00\x00"))
	f.Add(encodeFence(5)[:15])
	f.Fuzz(func(t *testing.T, b []byte) {
		tok, err := DecodeFence(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) || tok != 0 {
				t.Fatalf("DecodeFence(%x) = %d, %v; want 0 and an error matching ErrCorrupt", b, tok, err)
			}
			return
		}
		if !bytes.Equal(encodeFence(tok), b) {
			t.Fatalf("DecodeFence(%x) = %d, which encodes as %x", b, tok, encodeFence(tok))
		}
	})
}
