// Package rfc2136 is a dns.Switcher that points a DNS name at the active
// member with dynamic updates (RFC 2136) signed with TSIG (RFC 8945,
// formerly RFC 2845), fenced by a token record kept in the zone.
//
// # The records
//
// Promote replaces the RRset of Config.Type at Config.Name (A, AAAA or
// CNAME) with Config.Targets, and the TXT RRset at Config.TokenName
// (default "_hakit.<Name>") with one record
//
//	"hakit-token=<token>" "member=<member ID>"
//
// Both changes travel in one update message, which the server applies
// atomically or not at all.
//
// # The fencing rule
//
// Every change is a read followed by a conditional update:
//
//  1. Read the TXT RRset at TokenName from the primary server (Config.Server,
//     authoritative answer required). It must be empty or hold exactly one
//     record in the form above; anything else is an error (ErrMalformed),
//     never "no token".
//  2. If it holds a token greater than the caller's token t, refuse with an
//     error matching fence.ErrStale; nothing is sent. If it holds t itself
//     but another member's ID, refuse with ErrConflict.
//  3. Send the update with a prerequisite on exactly what was read: "TXT
//     RRset at TokenName does not exist" (RFC 2136 section 2.4.3) if it was
//     empty, otherwise "TXT RRset at TokenName exists and equals exactly the
//     records read" (section 2.4.2).
//  4. If the server answers NXRRSET or YXRRSET, the token record changed
//     between the read and the update: another member got there first. Read
//     it again and return fence.ErrStale if it now holds a token greater
//     than t, or ErrConflict otherwise (which a dns.Retry may retry: the
//     next attempt reads again). A stale refusal is never retried.
//  5. Read both RRsets back from the server and compare them with what was
//     written (ErrNotConfirmed if they differ).
//
// So a member holding token t changes the records only if, at the moment
// the server applies the change, the token record is exactly the one that
// member read, and that one held no token greater than t. Since tokens
// grow with each term, a member with an older token can never overwrite a
// newer term's records, however late its messages arrive.
//
// Demote(t) follows the same steps, and removes the RRset at Name only if
// the token record holds t and this member's ID (prerequisite: exactly
// that record). The token record itself stays: it is the fence, and
// removing it would let a member with an older token take the idle name.
// If the token record holds an older token, or none, there is nothing of
// term t to remove and Demote succeeds without changing anything; if it
// holds a newer one, Demote fails with fence.ErrStale.
//
// An update whose answer was lost (a timeout, a dropped connection) may
// still be applied by the server later. It carries its term's token and
// its prerequisite, so it can never overwrite a newer term's records; but
// it can land after a Demote of the same term has returned, leaving the
// record pointing at this member until the next term's Promote replaces
// it. A caller that must be sure should Demote again once the server
// answers again.
//
// The fence holds only if every writer of Name and TokenName goes through
// this rule: grant the TSIG key the update right for those two names and
// nothing else, and do not edit them by hand while members run.
//
// Errors: ErrAuth (TSIG rejected: wrong key name, secret or clock; or an
// answer without a valid TSIG, which is refused rather than trusted) and
// ErrRefused (the server's policy refused the update) are permanent,
// marked with dns.Permanent; ErrConflict, ErrNotConfirmed, ErrTimeout and
// ErrServer are transient.
package rfc2136

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"

	"github.com/hakit/hakit/dns"
	"github.com/hakit/hakit/dns/internal/tokenrec"
	"github.com/hakit/hakit/fence"
	mdns "github.com/miekg/dns"
)

// Errors of the switcher. Each returned error wraps one of them and names
// the zone, the record and the tokens involved.
var (
	// ErrAuth: the server rejected the TSIG signature (NOTAUTH: BADKEY,
	// BADSIG, BADTIME), or its answer failed verification or carried no
	// TSIG at all. Permanent.
	ErrAuth = errors.New("rfc2136: TSIG authentication failed")
	// ErrRefused: the server refused the update (REFUSED, NOTZONE,
	// NOTIMP, FORMERR) or is not authoritative for the zone. Permanent.
	ErrRefused = errors.New("rfc2136: update refused")
	// ErrConflict: the token record changed between the read and the
	// update, or holds this token for another member.
	ErrConflict = errors.New("rfc2136: token record changed concurrently")
	// ErrMalformed: the token record is not in the form this package
	// writes. Permanent: a person must look at the zone.
	ErrMalformed = errors.New("rfc2136: malformed token record")
	// ErrNotConfirmed: reading back after a successful update did not
	// show what was written.
	ErrNotConfirmed = errors.New("rfc2136: change not confirmed by the server")
	// ErrTimeout: the server did not answer within Config.Timeout.
	ErrTimeout = errors.New("rfc2136: server did not answer in time")
	// ErrServer: the server failed (SERVFAIL and other errors) or the
	// exchange failed on the network.
	ErrServer = errors.New("rfc2136: server error")
)

// Switcher points Config.Name at this member. It is safe for concurrent
// use; its calls run one at a time, and a call waiting for the one before
// it gives up when its own context ends.
type Switcher struct {
	cfg    Config
	typ    uint16
	client *mdns.Client
	log    *slog.Logger

	// sem serializes calls and guards conn: one slot, a channel rather
	// than a mutex so that a call waiting for the one before it honours
	// its context.
	sem  chan struct{}
	conn net.Conn // the current call's connection, or nil

	// afterRead, if set by a test, runs between the read of the token
	// record and the update, to stage a race.
	afterRead func()
}

var _ dns.Switcher = (*Switcher)(nil)

// New validates cfg and returns a Switcher. It does not contact the
// server.
func New(cfg Config) (*Switcher, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg, typ := cfg.normalized()
	log := cfg.Logger
	return &Switcher{
		cfg: cfg,
		typ: typ,
		sem: make(chan struct{}, 1),
		client: &mdns.Client{
			Net:        cfg.Net,
			TLSConfig:  cfg.TLSConfig,
			Timeout:    cfg.Timeout,
			TsigSecret: map[string]string{cfg.KeyName: cfg.Secret},
		},
		log: log.With("zone", cfg.Zone, "name", cfg.Name, "member", cfg.Member),
	}, nil
}

// String names the switcher in dns.Multi's errors.
func (s *Switcher) String() string {
	return fmt.Sprintf("rfc2136 %s %s", s.cfg.Name, mdns.TypeToString[s.typ])
}

// Promote points Name at Targets for the term with token t, under the
// rule in the package documentation.
func (s *Switcher) Promote(ctx context.Context, t fence.Token) error {
	if t == 0 {
		return fence.ErrNoToken
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.acquire(ctx); err != nil {
		return err
	}
	defer s.release()
	defer s.endCall()
	read, cur, err := s.readToken(ctx)
	if err != nil {
		return err
	}
	me := owner{Token: t, Member: s.cfg.Member}
	if err := s.check(t, cur); err != nil {
		return fmt.Errorf("rfc2136: promote %s: %w", s.cfg.Name, err)
	}
	want := s.records()
	if cur != nil && *cur == me {
		// Already ours: write only if the records drifted.
		have, err := s.readRecords(ctx)
		if err != nil {
			return err
		}
		if sameRecords(have, want) {
			return nil
		}
	}
	if s.afterRead != nil {
		s.afterRead()
	}
	m := s.update(read)
	m.RemoveRRset([]mdns.RR{s.tokenRR(nil)})
	m.RemoveRRset([]mdns.RR{&mdns.ANY{Hdr: mdns.RR_Header{Name: s.cfg.Name, Rrtype: s.typ}}})
	m.Insert(append(want, s.tokenRR(&me)))
	if err := s.send(ctx, m, "promote", t); err != nil {
		return err
	}
	if err := s.confirm(ctx, &me, want); err != nil {
		return err
	}
	prev := fence.Token(0)
	if cur != nil {
		prev = cur.Token
	}
	s.log.Info("rfc2136: promoted", "token", t.String(), "previous_token", prev.String(), "targets", s.cfg.Targets)
	return nil
}

// Demote removes Name's records if, and only if, the token record holds t
// and this member's ID. The token record stays, as the fence.
func (s *Switcher) Demote(ctx context.Context, t fence.Token) error {
	if t == 0 {
		return fence.ErrNoToken
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.acquire(ctx); err != nil {
		return err
	}
	defer s.release()
	defer s.endCall()
	read, cur, err := s.readToken(ctx)
	if err != nil {
		return err
	}
	if err := s.check(t, cur); err != nil {
		return fmt.Errorf("rfc2136: demote %s: %w", s.cfg.Name, err)
	}
	if cur == nil || cur.Token < t {
		return nil // nothing of term t is in the zone
	}
	have, err := s.readRecords(ctx)
	if err != nil {
		return err
	}
	if len(have) == 0 {
		return nil // already withdrawn
	}
	if s.afterRead != nil {
		s.afterRead()
	}
	// The token record stays: it is the fence that keeps an older term
	// from taking the name back while no member holds it.
	m := s.update(read)
	m.RemoveRRset([]mdns.RR{&mdns.ANY{Hdr: mdns.RR_Header{Name: s.cfg.Name, Rrtype: s.typ}}})
	if err := s.send(ctx, m, "demote", t); err != nil {
		return err
	}
	if err := s.confirm(ctx, cur, nil); err != nil {
		return err
	}
	s.log.Info("rfc2136: demoted", "token", t.String())
	return nil
}

// acquire waits for the call before this one to finish, or for ctx to end.
func (s *Switcher) acquire(ctx context.Context) error {
	select {
	case s.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("rfc2136: waiting for the previous call on %s: %w", s.cfg.Name, ctx.Err())
	}
}

func (s *Switcher) release() { <-s.sem }

// check applies step 2 of the rule to the token record read.
func (s *Switcher) check(t fence.Token, cur *owner) error {
	return tokenrec.Check(s.cfg.TokenName, t, s.cfg.Member, cur, ErrConflict)
}

// update starts an update message whose prerequisite is exactly the token
// RRset read (step 3 of the rule).
func (s *Switcher) update(read []mdns.RR) *mdns.Msg {
	m := new(mdns.Msg)
	m.SetUpdate(s.cfg.Zone)
	if len(read) == 0 {
		m.RRsetNotUsed([]mdns.RR{s.tokenRR(nil)})
	} else {
		prereq := make([]mdns.RR, len(read))
		for i, rr := range read {
			prereq[i] = mdns.Copy(rr)
		}
		m.Used(prereq)
	}
	return m
}

// tokenRR returns the token record of o, or an empty TXT header for the
// RRset when o is nil.
func (s *Switcher) tokenRR(o *owner) mdns.RR {
	rr := &mdns.TXT{Hdr: mdns.RR_Header{Name: s.cfg.TokenName, Rrtype: mdns.TypeTXT, Class: mdns.ClassINET, Ttl: s.cfg.TTL}}
	if o != nil {
		rr.Txt = tokenrec.Strings(*o)
	}
	return rr
}

// records returns the RRset Promote writes at Name.
func (s *Switcher) records() []mdns.RR {
	hdr := mdns.RR_Header{Name: s.cfg.Name, Rrtype: s.typ, Class: mdns.ClassINET, Ttl: s.cfg.TTL}
	out := make([]mdns.RR, 0, len(s.cfg.Targets))
	for _, tgt := range s.cfg.Targets {
		rr, err := mdns.NewRR(fmt.Sprintf("%s %d IN %s %s", hdr.Name, hdr.Ttl, mdns.TypeToString[s.typ], tgt))
		if err != nil || rr == nil {
			panic(fmt.Sprintf("rfc2136: validated target %q does not parse: %v", tgt, err)) // validate guarantees it does
		}
		out = append(out, rr)
	}
	return out
}

// sameRecords reports whether two RRsets hold the same data, ignoring
// order, TTL and case of names.
func sameRecords(a, b []mdns.RR) bool {
	key := func(rrs []mdns.RR) []string {
		out := make([]string, 0, len(rrs))
		for _, rr := range rrs {
			out = append(out, strings.ToLower(rdata(rr)))
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	return slices.Equal(key(a), key(b))
}

// rdata returns the presentation form of rr's data alone.
func rdata(rr mdns.RR) string {
	return strings.TrimPrefix(rr.String(), rr.Header().String())
}

// confirm reads both RRsets back and checks they hold what was written:
// o's token record (none when o is nil) and want.
func (s *Switcher) confirm(ctx context.Context, o *owner, want []mdns.RR) error {
	_, cur, err := s.readToken(ctx)
	if err != nil {
		return fmt.Errorf("rfc2136: confirm %s: %w", s.cfg.Name, err)
	}
	have, err := s.readRecords(ctx)
	if err != nil {
		return fmt.Errorf("rfc2136: confirm %s: %w", s.cfg.Name, err)
	}
	switch {
	case (o == nil) != (cur == nil), o != nil && *o != *cur:
		return fmt.Errorf("rfc2136: confirm: token record %s reads %v, want %v: %w", s.cfg.TokenName, cur, o, ErrNotConfirmed)
	case !sameRecords(have, want):
		return fmt.Errorf("rfc2136: confirm: %s %s reads %v, want %v: %w",
			s.cfg.Name, mdns.TypeToString[s.typ], have, want, ErrNotConfirmed)
	}
	return nil
}

// Observe reads the server's current state for Name: the token record's
// token and member (zero and "" if there is none) and whether Name has
// records of Config.Type. It is for tests, monitoring and tools.
func (s *Switcher) Observe(ctx context.Context) (tok fence.Token, member string, active bool, err error) {
	if err := s.acquire(ctx); err != nil {
		return 0, "", false, err
	}
	defer s.release()
	defer s.endCall()
	_, cur, err := s.readToken(ctx)
	if err != nil {
		return 0, "", false, err
	}
	have, err := s.readRecords(ctx)
	if err != nil {
		return 0, "", false, err
	}
	if cur != nil {
		tok, member = cur.Token, cur.Member
	}
	return tok, member, len(have) > 0, nil
}

// tsigFudge is the clock difference, in seconds, a TSIG signature allows.
const tsigFudge = 300
