package etcdlease

import (
	"errors"
	"strings"
	"testing"
)

func TestDecodeHandover(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want handover
		err  string // substring; "" means valid
	}{
		{"valid", `{"v":1,"from":"a","to":"b","token":7}`, handover{V: 1, From: "a", To: "b", Token: 7}, ""},
		{"empty", ``, handover{}, "not a handover record"},
		{"member record", `{"v":1,"id":"a"}`, handover{}, "unknown field"},
		{"wrong version", `{"v":2,"from":"a","to":"b","token":7}`, handover{}, "record version 2"},
		{"no target", `{"v":1,"from":"a","token":7}`, handover{}, `to "" is empty`},
		{"zero token", `{"v":1,"from":"a","to":"b","token":0}`, handover{}, "token 0 is not positive"},
		{"trailing data", `{"v":1,"from":"a","to":"b","token":7}{}`, handover{}, "data after"},
		{"bad utf8", "{\"v\":1,\"from\":\"\xff\",\"to\":\"b\",\"token\":7}", handover{}, "not valid UTF-8"},
		{"long id", `{"v":1,"from":"a","to":"` + strings.Repeat("b", MaxIDLen+1) + `","token":7}`, handover{}, "longer than"},
		{"too long", `{"v":1,"from":"` + strings.Repeat("a", maxHandoverLen) + `"}`, handover{}, "more than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeHandover("pfx.handover", []byte(tt.in))
			if tt.err == "" {
				if err != nil || got != tt.want {
					t.Fatalf("decodeHandover(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
				}
				return
			}
			if !errors.Is(err, ErrBadHandover) || !strings.Contains(err.Error(), tt.err) || !strings.Contains(err.Error(), `"pfx.handover"`) {
				t.Fatalf("decodeHandover(%q) error %v; want ErrBadHandover naming the key and containing %q", tt.in, err, tt.err)
			}
		})
	}
}

func TestHandoverKeyOutsidePrefix(t *testing.T) {
	for _, prefix := range []string{"hakit/election/", "/e2e/election/", "x/"} {
		k := handoverKey(prefix)
		if strings.HasPrefix(k, prefix) {
			t.Errorf("handover key %q is under the election prefix %q", k, prefix)
		}
	}
}

func FuzzDecodeHandover(f *testing.F) {
	f.Add([]byte(`{"v":1,"from":"a","to":"b","token":7}`))
	f.Add([]byte(`{"v":1,"from":"a","to":"b","token":-1}`))
	f.Add([]byte(`{"v":1,"from":"\u00e9","to":"b","token":9223372036854775807}`))
	f.Add([]byte(`{"v":1,"id":"a"}`))
	f.Add([]byte(`null`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := decodeHandover("k", b)
		if err != nil {
			if !errors.Is(err, ErrBadHandover) || !strings.Contains(err.Error(), `key "k"`) {
				t.Fatalf("error %v does not wrap ErrBadHandover or name the key", err)
			}
			return
		}
		if h.From == "" || h.To == "" || h.Token <= 0 || h.V != recordVersion {
			t.Fatalf("accepted an invalid record %+v", h)
		}
		again, err := decodeHandover("k", encodeHandover(h))
		if err != nil || again != h {
			t.Fatalf("round trip of %+v gave %+v, %v", h, again, err)
		}
	})
}
