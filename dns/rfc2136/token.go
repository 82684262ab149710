package rfc2136

import "github.com/hakit/hakit/dns/internal/tokenrec"

// owner is what one token record says; package tokenrec defines the
// record's form, shared with package route53.
type owner = tokenrec.Owner
