package fence

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want Token
		bad  string // substring of the error, "" if valid
	}{
		{"0", 0, ""},
		{"1", 1, ""},
		{"42", 42, ""},
		{"18446744073709551615", math.MaxUint64, ""},
		{"", 0, "empty"},
		{"18446744073709551616", 0, "out of range"},
		{"99999999999999999999999", 0, "out of range"},
		{"01", 0, "leading zero"},
		{"00", 0, "leading zero"},
		{"+1", 0, "byte 0"},
		{"-1", 0, "byte 0"},
		{" 1", 0, "byte 0"},
		{"1 ", 0, "byte 1"},
		{"1\n", 0, "byte 1"},
		{"0x10", 0, "leading zero"},
		{"1_000", 0, "byte 1"},
		{"1e3", 0, "byte 1"},
		{"١", 0, "byte 0"}, // a digit, but not an ASCII one
	}
	for _, tc := range tests {
		got, err := Parse(tc.in)
		if tc.bad == "" {
			if err != nil || got != tc.want {
				t.Errorf("Parse(%q) = %d, %v; want %d, nil", tc.in, got, err, tc.want)
			}
			continue
		}
		if err == nil || got != 0 {
			t.Errorf("Parse(%q) = %d, %v; want 0 and an error", tc.in, got, err)
			continue
		}
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.bad) {
			t.Errorf("Parse(%q) error %q: want one matching ErrMalformed that mentions %q", tc.in, err, tc.bad)
		}
		if tc.in != "" && !strings.Contains(err.Error(), tc.in[:1]) {
			t.Errorf("Parse(%q) error %q does not quote the input", tc.in, err)
		}
	}
}

func TestTextRoundTrip(t *testing.T) {
	for _, tok := range []Token{0, 1, 9, 10, 1 << 32, math.MaxUint64 - 1, math.MaxUint64} {
		text, err := tok.MarshalText()
		if err != nil {
			t.Fatalf("%d.MarshalText: %v", tok, err)
		}
		if string(text) != tok.String() {
			t.Errorf("%d.MarshalText = %q, String = %q", tok, text, tok.String())
		}
		var back Token
		if err := back.UnmarshalText(text); err != nil || back != tok {
			t.Errorf("UnmarshalText(%q) = %d, %v; want %d", text, back, err, tok)
		}
	}
}

func TestUnmarshalTextErrorLeavesTokenAlone(t *testing.T) {
	tok := Token(77)
	for _, in := range []string{"", "x", "-3", "007", "18446744073709551616"} {
		if err := tok.UnmarshalText([]byte(in)); !errors.Is(err, ErrMalformed) {
			t.Errorf("UnmarshalText(%q) error %v, want one matching ErrMalformed", in, err)
		}
		if tok != 77 {
			t.Fatalf("UnmarshalText(%q) changed the token to %d", in, tok)
		}
	}
}

func TestDecode(t *testing.T) {
	tests := []struct {
		in   []byte
		want Token
		ok   bool
	}{
		{[]byte{0, 0, 0, 0, 0, 0, 0, 0}, 0, true},
		{[]byte{0, 0, 0, 0, 0, 0, 0, 1}, 1, true},
		{[]byte{1, 0, 0, 0, 0, 0, 0, 0}, 1 << 56, true},
		{bytes.Repeat([]byte{0xff}, 8), math.MaxUint64, true},
		{nil, 0, false},
		{[]byte{}, 0, false},
		{[]byte{0, 0, 0, 0, 0, 0, 1}, 0, false},
		{[]byte{0, 0, 0, 0, 0, 0, 0, 0, 1}, 0, false},
	}
	for _, tc := range tests {
		got, err := Decode(tc.in)
		switch {
		case tc.ok && (err != nil || got != tc.want):
			t.Errorf("Decode(%x) = %d, %v; want %d, nil", tc.in, got, err, tc.want)
		case !tc.ok && (err == nil || got != 0 || !errors.Is(err, ErrMalformed)):
			t.Errorf("Decode(%x) = %d, %v; want 0 and an error matching ErrMalformed", tc.in, got, err)
		case !tc.ok && !strings.Contains(err.Error(), "got "+Token(len(tc.in)).String()+" bytes"):
			t.Errorf("Decode(%x) error %q does not name the length", tc.in, err)
		}
	}
}

func TestBytesOrderMatchesTokens(t *testing.T) {
	toks := []Token{0, 1, 255, 256, 65535, 1 << 32, 1<<56 - 1, 1 << 56, math.MaxUint64}
	for _, a := range toks {
		for _, b := range toks {
			want := 0
			if a < b {
				want = -1
			} else if a > b {
				want = 1
			}
			if got := bytes.Compare(a.Bytes(), b.Bytes()); got != want {
				t.Errorf("bytes.Compare(%d.Bytes(), %d.Bytes()) = %d, want %d", a, b, got, want)
			}
		}
	}
	if got := Token(5).AppendBinary([]byte("p")); !bytes.Equal(got, []byte{'p', 0, 0, 0, 0, 0, 0, 0, 5}) {
		t.Errorf("AppendBinary = %x", got)
	}
}

func TestStaleError(t *testing.T) {
	err := Stale(3, 9)
	if !errors.Is(err, ErrStale) {
		t.Fatalf("Stale(3, 9) does not match ErrStale")
	}
	if errors.Is(err, ErrNoToken) {
		t.Fatalf("Stale(3, 9) matches ErrNoToken")
	}
	var se *StaleError
	if !errors.As(err, &se) || se.Token != 3 || se.High != 9 {
		t.Fatalf("errors.As(Stale(3, 9)) = %+v", se)
	}
	if msg := err.Error(); msg != "fence: stale token 3: token 9 already admitted" {
		t.Fatalf("message %q", msg)
	}
	wrapped := errors.Join(errors.New("write checkpoint"), err)
	if !errors.Is(wrapped, ErrStale) {
		t.Fatalf("a wrapped StaleError does not match ErrStale")
	}
}
