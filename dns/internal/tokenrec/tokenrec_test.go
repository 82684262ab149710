package tokenrec

import (
	"errors"
	"slices"
	"testing"

	"github.com/hakit/hakit/dns"
	"github.com/hakit/hakit/fence"
)

func TestParse(t *testing.T) {
	tests := []struct {
		txt     []string
		want    Owner
		wantErr bool
	}{
		{[]string{"hakit-token=7", "member=a"}, Owner{7, "a"}, false},
		{[]string{"hakit-token=18446744073709551615", "member=db-1.example"}, Owner{1<<64 - 1, "db-1.example"}, false},
		{[]string{"hakit-token=0", "member=a"}, Owner{}, true},
		{[]string{"hakit-token=07", "member=a"}, Owner{}, true},
		{[]string{"hakit-token=-1", "member=a"}, Owner{}, true},
		{[]string{"hakit-token=7"}, Owner{}, true},
		{[]string{"hakit-token=7", "member=a", "x"}, Owner{}, true},
		{[]string{"member=a", "hakit-token=7"}, Owner{}, true},
		{[]string{"hakit-token=7", "member="}, Owner{}, true},
		{[]string{"hakit-token=7", "member=a b"}, Owner{}, true},
		{[]string{"token=7", "member=a"}, Owner{}, true},
		{nil, Owner{}, true},
	}
	for _, tt := range tests {
		got, err := Parse(tt.txt)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v, error %v", tt.txt, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestCheck(t *testing.T) {
	errConflict := errors.New("conflict")
	for _, tc := range []struct {
		name     string
		cur      *Owner
		t        fence.Token
		stale    bool
		conflict bool
	}{
		{"absent", nil, 5, false, false},
		{"older", &Owner{4, "b"}, 5, false, false},
		{"own", &Owner{5, "a"}, 5, false, false},
		{"newer", &Owner{6, "b"}, 5, true, false},
		{"same token, other member", &Owner{5, "b"}, 5, false, true},
	} {
		err := Check("_token.example.", tc.t, "a", tc.cur, errConflict)
		if got := errors.Is(err, fence.ErrStale); got != tc.stale {
			t.Errorf("%s: stale = %v (%v)", tc.name, got, err)
		}
		if got := errors.Is(err, errConflict); got != tc.conflict {
			t.Errorf("%s: conflict = %v (%v)", tc.name, got, err)
		}
		if tc.conflict && !dns.IsPermanent(err) {
			t.Errorf("%s: a conflict must not be retried: %v", tc.name, err)
		}
		if (tc.stale || tc.conflict) == (err == nil) {
			t.Errorf("%s: err = %v", tc.name, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add("hakit-token=7", "member=a")
	f.Add("hakit-token=18446744073709551616", "member=a")
	f.Add("hakit-token=", "member=\x00")
	f.Add("", "")
	f.Fuzz(func(t *testing.T, a, b string) {
		o, err := Parse([]string{a, b})
		if err != nil {
			return
		}
		if o.Token == 0 {
			t.Fatalf("parsed token zero from %q %q", a, b)
		}
		// What parses must be exactly what Strings writes.
		if again := Strings(o); !slices.Equal(again, []string{a, b}) {
			t.Fatalf("Parse(%q, %q) = %+v, which writes %q", a, b, o, again)
		}
	})
}

func FuzzRoundTrip(f *testing.F) {
	f.Add(uint64(1), "a")
	f.Add(uint64(1<<64-1), "member-with.dots_and-dashes")
	f.Fuzz(func(t *testing.T, tok uint64, member string) {
		if tok == 0 || CheckMember(member) != nil {
			return
		}
		o := Owner{fence.Token(tok), member}
		got, err := Parse(Strings(o))
		if err != nil || got != o {
			t.Fatalf("round trip of %+v = %+v, %v", o, got, err)
		}
	})
}
