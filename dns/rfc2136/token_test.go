package rfc2136

import (
	"slices"
	"testing"

	"github.com/hakit/hakit/fence"
)

func TestParseTokenTXT(t *testing.T) {
	tests := []struct {
		txt     []string
		want    owner
		wantErr bool
	}{
		{[]string{"hakit-token=7", "member=a"}, owner{7, "a"}, false},
		{[]string{"hakit-token=18446744073709551615", "member=db-1.example"}, owner{1<<64 - 1, "db-1.example"}, false},
		{[]string{"hakit-token=0", "member=a"}, owner{}, true},
		{[]string{"hakit-token=07", "member=a"}, owner{}, true},
		{[]string{"hakit-token=-1", "member=a"}, owner{}, true},
		{[]string{"hakit-token=7"}, owner{}, true},
		{[]string{"hakit-token=7", "member=a", "x"}, owner{}, true},
		{[]string{"member=a", "hakit-token=7"}, owner{}, true},
		{[]string{"hakit-token=7", "member="}, owner{}, true},
		{[]string{"hakit-token=7", "member=a b"}, owner{}, true},
		{[]string{"token=7", "member=a"}, owner{}, true},
		{nil, owner{}, true},
	}
	for _, tt := range tests {
		got, err := parseTokenTXT(tt.txt)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseTokenTXT(%q) = %+v, %v; want %+v, error %v", tt.txt, got, err, tt.want, tt.wantErr)
		}
	}
}

func FuzzParseTokenTXT(f *testing.F) {
	f.Add("hakit-token=7", "member=a")
	f.Add("hakit-token=18446744073709551616", "member=a")
	f.Add("hakit-token=", "member=\x00")
	f.Add("", "")
	f.Fuzz(func(t *testing.T, a, b string) {
		o, err := parseTokenTXT([]string{a, b})
		if err != nil {
			return
		}
		if o.Token == 0 {
			t.Fatalf("parsed token zero from %q %q", a, b)
		}
		// What parses must be exactly what tokenTXT writes.
		if again := tokenTXT(o.Token, o.Member); !slices.Equal(again, []string{a, b}) {
			t.Fatalf("parse(%q, %q) = %+v, which writes %q", a, b, o, again)
		}
	})
}

func FuzzTokenRoundTrip(f *testing.F) {
	f.Add(uint64(1), "a")
	f.Add(uint64(1<<64-1), "member-with.dots_and-dashes")
	f.Fuzz(func(t *testing.T, tok uint64, member string) {
		if tok == 0 || checkMember(member) != nil {
			return
		}
		got, err := parseTokenTXT(tokenTXT(fence.Token(tok), member))
		if err != nil || got != (owner{fence.Token(tok), member}) {
			t.Fatalf("round trip of %d %q = %+v, %v", tok, member, got, err)
		}
	})
}
