package route53

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/hakit/hakit/fence"
)

// The token record is one TXT value of two character-strings,
//
//	"hakit-token=<decimal token>" "member=<member ID>"
//
// the same form package rfc2136 writes, so a zone moved between the two
// keeps its fence.
const (
	tokenPrefix  = "hakit-token="
	memberPrefix = "member="
)

// owner is what a token record says.
type owner struct {
	Token  fence.Token
	Member string
}

func (o *owner) String() string {
	if o == nil {
		return "absent"
	}
	return fmt.Sprintf("token %d of member %q", o.Token, o.Member)
}

// tokenValue returns the token record's value in Route 53's presentation
// form. Member IDs are restricted (checkMember) so that no escaping is
// needed.
func tokenValue(o owner) string {
	return strconv.Quote(tokenPrefix+o.Token.String()) + " " + strconv.Quote(memberPrefix+o.Member)
}

// parseTokenValue reads a token record's value as Route 53 returns it.
// Anything but the exact form tokenValue writes is an error naming what is
// wrong, never token zero.
func parseTokenValue(v string) (owner, error) {
	strs, err := splitTXT(v)
	if err != nil {
		return owner{}, err
	}
	if len(strs) != 2 {
		return owner{}, fmt.Errorf("want 2 strings, got %d in %q", len(strs), v)
	}
	tokStr, ok := strings.CutPrefix(strs[0], tokenPrefix)
	if !ok {
		return owner{}, fmt.Errorf("first string %q does not start with %q", strs[0], tokenPrefix)
	}
	tok, err := fence.Parse(tokStr)
	if err != nil {
		return owner{}, err
	}
	if tok == 0 {
		return owner{}, fmt.Errorf("token is zero in %q", v)
	}
	member, ok := strings.CutPrefix(strs[1], memberPrefix)
	if !ok {
		return owner{}, fmt.Errorf("second string %q does not start with %q", strs[1], memberPrefix)
	}
	if err := checkMember(member); err != nil {
		return owner{}, err
	}
	return owner{Token: tok, Member: member}, nil
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

// checkMember limits member IDs to printable ASCII that needs no escaping
// in a TXT string.
func checkMember(m string) error {
	if m == "" {
		return fmt.Errorf("member ID is empty")
	}
	if len(m)+len(memberPrefix) > 255 {
		return fmt.Errorf("member ID %q is longer than %d bytes", m, 255-len(memberPrefix))
	}
	for i := 0; i < len(m); i++ {
		if c := m[i]; c <= ' ' || c >= 0x7f || c == '"' || c == '\\' || c == ';' {
			return fmt.Errorf("member ID %q has byte %#x at %d; use printable ASCII without quotes, backslashes or semicolons", m, c, i)
		}
	}
	return nil
}
