package etcdlease

import (
	"errors"
	"strings"
	"testing"
)

func TestDecodeRecord(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want record
		err  string // substring; "" means valid
	}{
		{"valid", `{"v":1,"id":"a","addr":"10.0.0.1:80"}`, record{V: 1, ID: "a", Addr: "10.0.0.1:80"}, ""},
		{"no addr", `{"v":1,"id":"a"}`, record{V: 1, ID: "a"}, ""},
		{"empty", ``, record{}, "not a member record"},
		{"null", `null`, record{}, "record version 0"},
		{"array", `[]`, record{}, "not a member record"},
		{"wrong version", `{"v":2,"id":"a"}`, record{}, "record version 2, want 1"},
		{"no id", `{"v":1}`, record{}, "member ID is empty"},
		{"unknown field", `{"v":1,"id":"a","x":1}`, record{}, "unknown field"},
		{"trailing data", `{"v":1,"id":"a"} {}`, record{}, "data after"},
		{"trailing garbage", `{"v":1,"id":"a"}x`, record{}, "data after"},
		{"bad utf8", "{\"v\":1,\"id\":\"\xff\"}", record{}, "not valid UTF-8"},
		{"id wrong type", `{"v":1,"id":7}`, record{}, "not a member record"},
		{"too long", `{"v":1,"id":"` + strings.Repeat("a", maxRecordLen) + `"}`, record{}, "more than"},
		{"long id", `{"v":1,"id":"` + strings.Repeat("a", MaxIDLen+1) + `"}`, record{}, "member ID has 257 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeRecord("pfx/k", []byte(tt.in))
			if tt.err == "" {
				if err != nil || got != tt.want {
					t.Fatalf("decodeRecord(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
				}
				return
			}
			if !errors.Is(err, ErrBadRecord) || !strings.Contains(err.Error(), tt.err) || !strings.Contains(err.Error(), `"pfx/k"`) {
				t.Fatalf("decodeRecord(%q) error %v; want ErrBadRecord naming the key and containing %q", tt.in, err, tt.err)
			}
		})
	}
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add([]byte(`{"v":1,"id":"a","addr":"10.0.0.1:80"}`))
	f.Add([]byte(`{"v":1,"id":"\u00e9"}`))
	f.Add([]byte(`{"v":1,"id":"a"} `))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"v":1,"id":"\ud800"}`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord("k", b)
		if err != nil {
			if !errors.Is(err, ErrBadRecord) || !strings.Contains(err.Error(), `key "k"`) {
				t.Fatalf("error %v does not wrap ErrBadRecord or name the key", err)
			}
			return
		}
		if r.ID == "" || r.V != recordVersion {
			t.Fatalf("accepted an invalid record %+v", r)
		}
		again, err := decodeRecord("k", encodeRecord(r.ID, r.Addr))
		if err != nil || again != r {
			t.Fatalf("round trip of %+v gave %+v, %v", r, again, err)
		}
	})
}
