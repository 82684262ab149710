package storage_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/hakit/hakit/storage"
)

func TestValidateKey(t *testing.T) {
	tests := []struct {
		key  string
		want string // substring of the error, "" if valid
	}{
		{"k", ""},
		{"a/b", ""},
		{"../x", ""},
		{"ünï", ""},
		{strings.Repeat("x", storage.MaxKeyLen), ""},
		{"", "empty"},
		{strings.Repeat("x", storage.MaxKeyLen+1), "513 bytes"},
		{"a\xffb", "UTF-8"},
		{"a\x00b", "NUL byte at 1"},
	}
	for _, tc := range tests {
		err := storage.ValidateKey(tc.key)
		if tc.want == "" {
			if err != nil {
				t.Errorf("ValidateKey(%q) = %v, want nil", tc.key, err)
			}
			continue
		}
		if !errors.Is(err, storage.ErrInvalidKey) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ValidateKey(%.20q) = %v, want an ErrInvalidKey mentioning %q", tc.key, err, tc.want)
		}
	}
}

func TestCheckCommit(t *testing.T) {
	tests := []struct {
		name  string
		conds []storage.Cond
		ops   []storage.Op
		ok    bool
	}{
		{"empty", nil, nil, true},
		{"distinct", []storage.Cond{{Key: "a"}}, []storage.Op{{Key: "a"}, {Key: "b", Delete: true}}, true},
		{"cond on written key", []storage.Cond{{Key: "a", Version: 3}}, []storage.Op{{Key: "a"}}, true},
		{"duplicate op", nil, []storage.Op{{Key: "a"}, {Key: "a", Delete: true}}, false},
		{"bad cond key", []storage.Cond{{Key: ""}}, nil, false},
		{"bad op key", nil, []storage.Op{{Key: "a\x00"}}, false},
	}
	for _, tc := range tests {
		err := storage.CheckCommit(tc.conds, tc.ops)
		if tc.ok != (err == nil) || (err != nil && !errors.Is(err, storage.ErrInvalidKey)) {
			t.Errorf("%s: CheckCommit = %v", tc.name, err)
		}
	}
}

func TestCheckCommitManyOps(t *testing.T) {
	ops := make([]storage.Op, 40)
	for i := range ops {
		ops[i].Key = strings.Repeat("k", i+1)
	}
	if err := storage.CheckCommit(nil, ops); err != nil {
		t.Fatalf("CheckCommit of 40 distinct keys: %v", err)
	}
	ops[39].Key = ops[3].Key
	if err := storage.CheckCommit(nil, ops); !errors.Is(err, storage.ErrInvalidKey) {
		t.Fatalf("CheckCommit of 40 keys with a repeat: %v", err)
	}
}
