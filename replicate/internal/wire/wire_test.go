package wire

import (
	"bytes"
	"errors"
	"testing"
)

var errBad = errors.New("bad")

func TestFieldRoundTrip(t *testing.T) {
	b := AppendField(AppendField(nil, []byte("pos")), nil)
	f, rest, err := CutField(b, "a", 16, errBad)
	if err != nil || string(f) != "pos" {
		t.Fatalf("first field %q, %v", f, err)
	}
	f, rest, err = CutField(rest, "b", 16, errBad)
	if err != nil || f != nil || len(rest) != 0 {
		t.Fatalf("empty field %q, rest %d, %v", f, len(rest), err)
	}
}

func TestCutFieldRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"short length", []byte{0, 0}},
		{"past the end", []byte{0, 0, 0, 5, 'a'}},
		{"over max", AppendField(nil, bytes.Repeat([]byte{1}, 17))},
	} {
		if _, _, err := CutField(tc.b, "position", 16, errBad); !errors.Is(err, errBad) || !bytes.Contains([]byte(err.Error()), []byte("position")) {
			t.Errorf("%s: %v, want an error wrapping errBad naming the field", tc.name, err)
		}
	}
}

func FuzzCutField(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 'x'})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		field, rest, err := CutField(b, "f", 1<<20, errBad)
		if err != nil {
			return
		}
		if got := append(AppendField(nil, field), rest...); !bytes.Equal(got, b) {
			t.Fatalf("re-encoding %x gives %x", b, got)
		}
	})
}
