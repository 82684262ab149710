// Package fence provides fencing tokens and the guard that admits them.
//
// A fencing token identifies one term of leadership. Every term carries a
// token strictly larger than every earlier term's, so a resource that
// remembers the highest token it has admitted can refuse writes from a
// member that lost its lease but has not noticed yet (a long GC pause, a
// SIGSTOP, a partition). That refusal is what makes "the old one can no
// longer write anything that counts" true, whatever the old one's clock or
// scheduler does.
//
// The package imports nothing else from hakit.
package fence

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
)

// Token is a fencing token. The zero Token means "no term" and is never
// admitted by a Guard. A later term always has a larger Token than an
// earlier one of the same election.
type Token uint64

// EncodedLen is the length of a Token's binary encoding.
const EncodedLen = 8

// ErrStale is the error every stale write wraps: a write carried a token
// smaller than one the resource had already admitted. Test for it with
// errors.Is(err, fence.ErrStale).
var ErrStale = errors.New("fence: stale token")

// ErrNoToken is returned when a write carries the zero Token, which belongs
// to no term.
var ErrNoToken = errors.New("fence: zero token belongs to no term")

// ErrMalformed is wrapped by the errors of Parse, UnmarshalText and Decode
// for input that is not the one encoding of a token.
var ErrMalformed = errors.New("fence: malformed token")

// StaleError reports a rejected token together with the higher token that
// had already been admitted. It matches ErrStale under errors.Is.
type StaleError struct {
	Token Token // the token that was refused
	High  Token // the highest token admitted before it
}

// Error names both tokens.
func (e *StaleError) Error() string {
	return fmt.Sprintf("fence: stale token %d: token %d already admitted", e.Token, e.High)
}

// Is reports whether target is ErrStale.
func (e *StaleError) Is(target error) bool { return target == ErrStale }

// Stale returns the error for a write under t refused because high was
// already admitted. It is for backends that enforce the fence themselves
// (in a transaction, in a replicated apply rule) and must report it the
// same way a Guard does.
func Stale(t, high Token) error { return &StaleError{Token: t, High: high} }

// String formats t in decimal.
func (t Token) String() string { return strconv.FormatUint(uint64(t), 10) }

// Bytes returns the 8-byte big-endian encoding of t. Byte-wise comparison
// of two encodings orders them exactly as the tokens, which is what lets a
// store such as etcd compare tokens in a transaction.
func (t Token) Bytes() []byte { return t.AppendBinary(nil) }

// AppendBinary appends the 8-byte big-endian encoding of t to b.
func (t Token) AppendBinary(b []byte) []byte { return binary.BigEndian.AppendUint64(b, uint64(t)) }

// MarshalText implements encoding.TextMarshaler (decimal).
func (t Token) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler; it accepts what
// MarshalText produces and nothing else (see Parse). On error *t is left
// unchanged.
func (t *Token) UnmarshalText(b []byte) error {
	v, err := Parse(string(b))
	if err != nil {
		return err
	}
	*t = v
	return nil
}

// Parse reads a token written by Token.String. It rejects signs, spaces,
// leading zeros and values that overflow 64 bits, so that one token has
// exactly one spelling. Errors wrap ErrMalformed and quote the input.
func Parse(s string) (Token, error) {
	if s == "" {
		return 0, fmt.Errorf("%w: parse: empty string", ErrMalformed)
	}
	if len(s) > 1 && s[0] == '0' {
		return 0, fmt.Errorf("%w: parse %q: leading zero", ErrMalformed, s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%w: parse %q: byte %d is not a decimal digit", ErrMalformed, s, i)
		}
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: parse %q: out of range for 64 bits", ErrMalformed, s)
	}
	return Token(v), nil
}

// Decode reads the 8-byte encoding produced by Token.Bytes. Any other
// length is an error wrapping ErrMalformed, never a zero token.
func Decode(b []byte) (Token, error) {
	if len(b) != EncodedLen {
		return 0, fmt.Errorf("%w: decode: got %d bytes, want %d", ErrMalformed, len(b), EncodedLen)
	}
	return Token(binary.BigEndian.Uint64(b)), nil
}
