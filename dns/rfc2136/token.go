package rfc2136

import (
	"fmt"
	"strings"

	"github.com/hakit/hakit/fence"
)

// The token record is one TXT record with two character-strings,
//
//	"hakit-token=<decimal token>" "member=<member ID>"
//
// in that order. The member ID is there for people reading the zone; the
// fence uses the token.
const (
	tokenPrefix  = "hakit-token="
	memberPrefix = "member="
)

// tokenTXT returns the character-strings of the token record.
func tokenTXT(t fence.Token, member string) []string {
	return []string{tokenPrefix + t.String(), memberPrefix + member}
}

// owner is what one token record says: the term's token and its member.
type owner struct {
	Token  fence.Token
	Member string
}

// parseTokenTXT reads the character-strings of one token record. Anything
// but the exact form tokenTXT writes is an error naming what is wrong,
// never token zero.
func parseTokenTXT(txt []string) (owner, error) {
	if len(txt) != 2 {
		return owner{}, fmt.Errorf("want 2 strings, got %d (%q)", len(txt), txt)
	}
	tokStr, ok := strings.CutPrefix(txt[0], tokenPrefix)
	if !ok {
		return owner{}, fmt.Errorf("first string %q does not start with %q", txt[0], tokenPrefix)
	}
	tok, err := fence.Parse(tokStr)
	if err != nil {
		return owner{}, err
	}
	if tok == 0 {
		return owner{}, fmt.Errorf("token is zero in %q", txt[0])
	}
	member, ok := strings.CutPrefix(txt[1], memberPrefix)
	if !ok {
		return owner{}, fmt.Errorf("second string %q does not start with %q", txt[1], memberPrefix)
	}
	if err := checkMember(member); err != nil {
		return owner{}, err
	}
	return owner{Token: tok, Member: member}, nil
}

// checkMember limits member IDs to what fits a TXT character-string and
// reads back unchanged.
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
