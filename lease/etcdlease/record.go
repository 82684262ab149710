package etcdlease

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// ErrBadRecord is wrapped by the error for a value under the election
// prefix that is not a member record this package wrote. The message names
// the key.
var ErrBadRecord = errors.New("etcdlease: bad member record")

// recordVersion is the format version of member records; a record of any
// other version is rejected rather than guessed at.
const recordVersion = 1

// maxRecordLen bounds a member record: an ID and an address plus framing.
const maxRecordLen = MaxIDLen + MaxAddrLen + 256

// record is the value of a campaign key: who campaigns with it.
type record struct {
	V    int    `json:"v"`
	ID   string `json:"id"`
	Addr string `json:"addr,omitempty"`
}

func encodeRecord(id, addr string) []byte {
	b, err := json.Marshal(record{V: recordVersion, ID: id, Addr: addr})
	if err != nil {
		// A struct of an int and two strings always marshals.
		panic(fmt.Sprintf("etcdlease: encode member record: %v", err))
	}
	return b
}

// decodeRecord decodes the value stored under key. It accepts exactly one
// JSON object of the current version with a non-empty ID and fields no
// longer than a Config allows; anything else is an error wrapping
// ErrBadRecord that names key.
func decodeRecord(key string, b []byte) (record, error) {
	bad := func(format string, args ...any) (record, error) {
		return record{}, fmt.Errorf("%w: key %q: "+format, append([]any{ErrBadRecord, key}, args...)...)
	}
	if len(b) > maxRecordLen {
		return bad("value has %d bytes, more than %d", len(b), maxRecordLen)
	}
	if !utf8.Valid(b) {
		return bad("value is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var r record
	if err := dec.Decode(&r); err != nil {
		return bad("value is not a member record: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return bad("value has data after the member record")
	}
	switch {
	case r.V != recordVersion:
		return bad("record version %d, want %d", r.V, recordVersion)
	case r.ID == "":
		return bad("member ID is empty")
	case len(r.ID) > MaxIDLen:
		return bad("member ID has %d bytes, more than %d", len(r.ID), MaxIDLen)
	case len(r.Addr) > MaxAddrLen:
		return bad("address has %d bytes, more than %d", len(r.Addr), MaxAddrLen)
	}
	return r, nil
}
