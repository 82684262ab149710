package fence

import (
	"bytes"
	"errors"
	"strconv"
	"testing"
)

// FuzzParse checks that Parse accepts exactly the canonical decimal
// spellings: whatever it accepts prints back to the same string, and
// every canonical spelling of a uint64 is accepted.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"0", "1", "42", "18446744073709551615", "18446744073709551616", "", "01", "-1", "+1", " 1", "1 ", "0x1f", "1e9", "١٢", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := Parse(s)
		var viaText Token
		textErr := viaText.UnmarshalText([]byte(s))
		if (err == nil) != (textErr == nil) || tok != viaText {
			t.Fatalf("Parse(%q) = %d, %v but UnmarshalText gives %d, %v", s, tok, err, viaText, textErr)
		}
		v, perr := strconv.ParseUint(s, 10, 64)
		canonical := perr == nil && strconv.FormatUint(v, 10) == s
		if err != nil {
			if !errors.Is(err, ErrMalformed) || tok != 0 {
				t.Fatalf("Parse(%q) = %d, %v: want 0 and an error matching ErrMalformed", s, tok, err)
			}
			if canonical {
				t.Fatalf("Parse(%q) refused a canonical spelling: %v", s, err)
			}
			return
		}
		if !canonical || uint64(tok) != v || tok.String() != s {
			t.Fatalf("Parse(%q) = %d, which prints as %q", s, tok, tok.String())
		}
		if text, _ := tok.MarshalText(); string(text) != s {
			t.Fatalf("MarshalText(Parse(%q)) = %q", s, text)
		}
	})
}

// FuzzDecode checks that Decode accepts exactly 8 bytes and round-trips
// through Bytes.
func FuzzDecode(f *testing.F) {
	for _, b := range [][]byte{nil, {}, {1}, make([]byte, 7), make([]byte, 8), bytes.Repeat([]byte{0xff}, 8), make([]byte, 9), []byte("hkf\x01\x00\x00\x00\x00")} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		tok, err := Decode(b)
		if len(b) != EncodedLen {
			if err == nil || tok != 0 || !errors.Is(err, ErrMalformed) {
				t.Fatalf("Decode(%x) = %d, %v: want 0 and an error matching ErrMalformed", b, tok, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("Decode(%x): %v", b, err)
		}
		if !bytes.Equal(tok.Bytes(), b) {
			t.Fatalf("Decode(%x) = %d, whose encoding is %x", b, tok, tok.Bytes())
		}
	})
}

// FuzzBytesOrder checks that byte-wise order of encodings is token order,
// which etcd-style stores rely on to compare tokens in a transaction.
func FuzzBytesOrder(f *testing.F) {
	f.Add(uint64(0), uint64(1))
	f.Add(uint64(255), uint64(256))
	f.Add(uint64(1<<63), uint64(1<<63-1))
	f.Fuzz(func(t *testing.T, a, b uint64) {
		got := bytes.Compare(Token(a).Bytes(), Token(b).Bytes())
		want := 0
		if a < b {
			want = -1
		} else if a > b {
			want = 1
		}
		if got != want {
			t.Fatalf("bytes.Compare of encodings of %d and %d = %d, want %d", a, b, got, want)
		}
	})
}
