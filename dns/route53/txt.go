package route53

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/hakit/hakit/dns/internal/tokenrec"
)

// owner is what one token record says; package tokenrec defines the
// record's form, shared with package rfc2136, so a zone moved between the
// two keeps its fence.
type owner = tokenrec.Owner

// tokenValue returns the token record's value in Route 53's presentation
// form. Member IDs are restricted (checkMember) so that no escaping is
// needed.
func tokenValue(o owner) string {
	strs := tokenrec.Strings(o)
	return strconv.Quote(strs[0]) + " " + strconv.Quote(strs[1])
}

// parseTokenValue reads a token record's value as Route 53 returns it.
// Anything but the exact form tokenValue writes is an error naming what is
// wrong, never token zero.
func parseTokenValue(v string) (owner, error) {
	strs, err := splitTXT(v)
	if err != nil {
		return owner{}, err
	}
	o, err := tokenrec.Parse(strs)
	if err != nil {
		return owner{}, fmt.Errorf("%q: %w", v, err)
	}
	return o, nil
}

// splitTXT splits a TXT value in presentation form into its
// character-strings: each is enclosed in double quotes, with \" and \\
// escaped and \DDD decimal escapes for other bytes, and strings are
// separated by single spaces.
func splitTXT(v string) ([]string, error) {
	var out []string
	i := 0
	for i < len(v) {
		if len(out) > 0 {
			if v[i] != ' ' {
				return nil, fmt.Errorf("byte %d of %q: want a space between strings", i, v)
			}
			i++
		}
		if i >= len(v) || v[i] != '"' {
			return nil, fmt.Errorf("byte %d of %q: want an opening quote", i, v)
		}
		i++
		var b strings.Builder
		closed := false
		for i < len(v) {
			c := v[i]
			if c == '"' {
				closed = true
				i++
				break
			}
			if c != '\\' {
				b.WriteByte(c)
				i++
				continue
			}
			if i+1 >= len(v) {
				return nil, fmt.Errorf("byte %d of %q: backslash at the end", i, v)
			}
			if d := v[i+1]; d < '0' || d > '9' {
				b.WriteByte(d)
				i += 2
				continue
			}
			if i+3 >= len(v) {
				return nil, fmt.Errorf("byte %d of %q: short \\DDD escape", i, v)
			}
			n, err := strconv.ParseUint(v[i+1:i+4], 10, 8)
			if err != nil {
				return nil, fmt.Errorf("byte %d of %q: bad \\DDD escape", i, v)
			}
			b.WriteByte(byte(n))
			i += 4
		}
		if !closed {
			return nil, fmt.Errorf("%q: unterminated string", v)
		}
		if b.Len() > 255 {
			return nil, fmt.Errorf("%q: a string is longer than 255 bytes", v)
		}
		out = append(out, b.String())
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%q: no strings", v)
	}
	return out, nil
}
