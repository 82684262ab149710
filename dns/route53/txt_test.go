package route53

import (
	"slices"
	"strconv"
	"testing"

	"github.com/hakit/hakit/dns/internal/tokenrec"
	"github.com/hakit/hakit/fence"
)

func TestSplitTXT(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{`"a"`, []string{"a"}, false},
		{`"a" "b c"`, []string{"a", "b c"}, false},
		{`"q\"x\\y"`, []string{`q"x\y`}, false},
		{`"\065\066"`, []string{"AB"}, false},
		{`""`, []string{""}, false},
		{``, nil, true},
		{`a`, nil, true},
		{`"a`, nil, true},
		{`"a""b"`, nil, true},
		{`"a"  "b"`, nil, true},
		{`"a" `, nil, true},
		{`"\`, nil, true},
		{`"\25"`, nil, true},
		{`"\999"`, nil, true},
	}
	for _, tt := range tests {
		got, err := splitTXT(tt.in)
		if (err != nil) != tt.wantErr || !slices.Equal(got, tt.want) {
			t.Errorf("splitTXT(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestParseTokenValue(t *testing.T) {
	tests := []struct {
		in      string
		want    owner
		wantErr bool
	}{
		{`"hakit-token=5" "member=db-1"`, owner{Token: 5, Member: "db-1"}, false},
		{`"hakit-token=0" "member=a"`, owner{}, true},
		{`"hakit-token=5"`, owner{}, true},
		{`"hakit-token=x" "member=a"`, owner{}, true},
		{`"member=a" "hakit-token=5"`, owner{}, true},
		{`"hakit-token=5" "member=a\032b"`, owner{}, true},
	}
	for _, tt := range tests {
		got, err := parseTokenValue(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseTokenValue(%q) = %+v, %v; want %+v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func FuzzParseTokenValue(f *testing.F) {
	f.Add(`"hakit-token=5" "member=db-1"`)
	f.Add(`"hakit-token=18446744073709551615" "member=\065"`)
	f.Add(`"\"" "\\"`)
	f.Add(`"`)
	f.Fuzz(func(t *testing.T, v string) {
		o, err := parseTokenValue(v)
		if err != nil {
			return
		}
		if o.Token == 0 || tokenrec.CheckMember(o.Member) != nil {
			t.Fatalf("parseTokenValue(%q) accepted %+v", v, o)
		}
		// What parses must mean what tokenValue writes for it.
		again, err := parseTokenValue(tokenValue(o))
		if err != nil || again != o {
			t.Fatalf("round trip of %+v: %+v, %v", o, again, err)
		}
	})
}

func FuzzSplitTXT(f *testing.F) {
	f.Add(`"a" "b"`)
	f.Add(`"\255\000"`)
	f.Fuzz(func(t *testing.T, v string) {
		strs, err := splitTXT(v)
		if err != nil {
			return
		}
		// Re-quoting each string the simple way and splitting again gives
		// the same strings back.
		var q string
		for i, s := range strs {
			if i > 0 {
				q += " "
			}
			q += `"`
			for j := 0; j < len(s); j++ {
				switch c := s[j]; {
				case c == '"' || c == '\\':
					q += `\` + string(c)
				case c < ' ' || c >= 0x7f:
					q += `\` + leftPad(strconv.Itoa(int(c)))
				default:
					q += string(c)
				}
			}
			q += `"`
		}
		again, err := splitTXT(q)
		if err != nil || !slices.Equal(again, strs) {
			t.Fatalf("splitTXT(%q) = %q; re-quoted %q splits to %q, %v", v, strs, q, again, err)
		}
	})
}

func leftPad(s string) string {
	for len(s) < 3 {
		s = "0" + s
	}
	return s
}

func TestTokenValueRoundTrip(t *testing.T) {
	o := owner{Token: fence.Token(1<<64 - 1), Member: "db-1.example:5432"}
	got, err := parseTokenValue(tokenValue(o))
	if err != nil || got != o {
		t.Fatalf("round trip of %+v = %+v, %v", o, got, err)
	}
}
