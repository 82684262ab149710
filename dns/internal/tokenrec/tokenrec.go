// Package tokenrec is the token record that the DNS switchers (rfc2136,
// route53) keep beside the records they switch: one TXT record of two
// character-strings,
//
//	"hakit-token=<decimal token>" "member=<member ID>"
//
// in that order. It is the fence of the zone: a switcher writes only if the
// record is absent or holds an older token, or its own token and member.
// Both switchers write the same form, so a zone moved from one to the other
// keeps its fence. The member ID is there for people reading the zone.
package tokenrec

import (
	"fmt"
	"strings"

	"github.com/hakit/hakit/dns"
	"github.com/hakit/hakit/fence"
)

const (
	tokenPrefix  = "hakit-token="
	memberPrefix = "member="
)

// Owner is what one token record says: the term's token and its member.
type Owner struct {
	Token  fence.Token
	Member string
}

// String describes o, or "absent" for a nil Owner.
func (o *Owner) String() string {
	if o == nil {
		return "absent"
	}
	return fmt.Sprintf("token %d of member %q", o.Token, o.Member)
}

// Strings returns the character-strings of o's token record.
func Strings(o Owner) []string {
	return []string{tokenPrefix + o.Token.String(), memberPrefix + o.Member}
}

// Parse reads the character-strings of one token record. Anything but the
// exact form Strings writes is an error naming what is wrong, never token
// zero.
func Parse(txt []string) (Owner, error) {
	if len(txt) != 2 {
		return Owner{}, fmt.Errorf("want 2 strings, got %d (%q)", len(txt), txt)
	}
	tokStr, ok := strings.CutPrefix(txt[0], tokenPrefix)
	if !ok {
		return Owner{}, fmt.Errorf("first string %q does not start with %q", txt[0], tokenPrefix)
	}
	tok, err := fence.Parse(tokStr)
	if err != nil {
		return Owner{}, err
	}
	if tok == 0 {
		return Owner{}, fmt.Errorf("token is zero in %q", txt[0])
	}
	member, ok := strings.CutPrefix(txt[1], memberPrefix)
	if !ok {
		return Owner{}, fmt.Errorf("second string %q does not start with %q", txt[1], memberPrefix)
	}
	if err := CheckMember(member); err != nil {
		return Owner{}, err
	}
	return Owner{Token: tok, Member: member}, nil
}

// CheckMember limits member IDs to printable ASCII that fits a TXT
// character-string, needs no escaping and reads back unchanged.
func CheckMember(m string) error {
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

// Check applies the fencing rule to cur, the token record read at name (nil
// if absent), for a write by member under token t: an absent or older
// record admits it; a newer one refuses it with fence.Stale; the same token
// under another member is a permanent conflict wrapping errConflict (two
// members cannot hold one term, so a retry cannot help).
func Check(name string, t fence.Token, member string, cur *Owner, errConflict error) error {
	switch {
	case cur == nil || cur.Token < t:
		return nil
	case cur.Token > t:
		return fmt.Errorf("token record %s: %w", name, fence.Stale(t, cur.Token))
	case cur.Member != member:
		return dns.Permanent(fmt.Errorf("token record %s holds token %d for member %q, not %q: %w",
			name, t, cur.Member, member, errConflict))
	}
	return nil
}
