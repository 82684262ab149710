package rfc2136

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/hakit/hakit/dns"
	"github.com/hakit/hakit/dns/internal/tokenrec"
	"github.com/hakit/hakit/fence"
	mdns "github.com/miekg/dns"
)

// errExchangeTimeout is the cause of an exchange's context when
// Config.Timeout, not the caller's context, ended it.
var errExchangeTimeout = errors.New("rfc2136: exchange timeout")

// exchange signs m with TSIG, sends it and returns the verified answer.
// It honours ctx's cancellation as well as its deadline. The exchanges of
// one call share a connection, opened by the first of them and closed by
// endCall or by any failure; the caller holds s.sem.
func (s *Switcher) exchange(ctx context.Context, m *mdns.Msg, what string) (*mdns.Msg, error) {
	m.SetTsig(s.cfg.KeyName, s.cfg.Algorithm, tsigFudge, time.Now().Unix())
	ectx, cancel := context.WithTimeoutCause(ctx, s.cfg.Timeout, errExchangeTimeout)
	defer cancel()
	if s.conn == nil {
		conn, err := s.client.DialContext(ectx, s.cfg.Server)
		if err != nil {
			return nil, s.netErr(ctx, ectx, what, err)
		}
		s.conn = conn.Conn
	}
	// A fresh mdns.Conn per message: mdns.Conn chains each TSIG to the
	// previous message's MAC (for zone transfers), which a server
	// rightly rejects for independent requests.
	conn := &mdns.Conn{Conn: s.conn}
	// miekg/dns honours only the deadline; expire the connection's
	// deadline at once when ctx is cancelled.
	stop := context.AfterFunc(ectx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	r, _, err := s.client.ExchangeWithConnContext(ectx, m, conn)
	if !stop() || err != nil {
		s.endCall() // the connection's state is unknown: never reuse it
	}
	if err != nil {
		if isTSIGError(err) {
			detail := ""
			if r != nil {
				detail = " (" + answerDetail(r) + ")"
			}
			return nil, dns.Permanent(fmt.Errorf("rfc2136: %s at %s with key %s: %v%s: %w",
				what, s.cfg.Server, s.cfg.KeyName, err, detail, ErrAuth))
		}
		return nil, s.netErr(ctx, ectx, what, err)
	}
	if r.Rcode == mdns.RcodeNotAuth {
		return nil, dns.Permanent(fmt.Errorf("rfc2136: %s at %s with key %s: server answered %s: %w",
			what, s.cfg.Server, s.cfg.KeyName, answerDetail(r), ErrAuth))
	}
	if r.IsTsig() == nil {
		// miekg/dns verifies a TSIG an answer carries, but takes an
		// answer without one: anyone on the path could forge the token
		// record, or the success of an update, in it. A server may
		// leave a refusal unsigned (Knot does, for a zone it does not
		// serve): that one also matches ErrRefused.
		err := fmt.Errorf("rfc2136: %s at %s with key %s: the answer (%s) carries no TSIG signature: %w",
			what, s.cfg.Server, s.cfg.KeyName, answerDetail(r), ErrAuth)
		switch r.Rcode {
		case mdns.RcodeRefused, mdns.RcodeNotZone, mdns.RcodeNotImplemented, mdns.RcodeFormatError:
			err = fmt.Errorf("%w (%w)", err, ErrRefused)
		}
		return nil, dns.Permanent(err)
	}
	return r, nil
}

// endCall closes the call's connection, if one is open; the caller holds
// s.sem.
func (s *Switcher) endCall() {
	if s.conn != nil {
		_ = s.conn.Close()
		s.conn = nil
	}
}

// netErr classifies a failed exchange: the caller's context, the
// exchange's own timeout, or the network.
func (s *Switcher) netErr(ctx, ectx context.Context, what string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("rfc2136: %s at %s: %w", what, s.cfg.Server, errors.Join(cerr, err))
	}
	var ne net.Error
	if context.Cause(ectx) == errExchangeTimeout || (errors.As(err, &ne) && ne.Timeout()) {
		return fmt.Errorf("rfc2136: %s at %s: no answer within %v: %w", what, s.cfg.Server, s.cfg.Timeout, ErrTimeout)
	}
	return fmt.Errorf("rfc2136: %s at %s: %v: %w", what, s.cfg.Server, err, ErrServer)
}

func isTSIGError(err error) bool {
	return errors.Is(err, mdns.ErrAuth) || errors.Is(err, mdns.ErrNoSig) || errors.Is(err, mdns.ErrSig) || errors.Is(err, mdns.ErrKey) ||
		errors.Is(err, mdns.ErrTime) || errors.Is(err, mdns.ErrSecret) ||
		errors.Is(err, mdns.ErrKeyAlg) || errors.Is(err, mdns.ErrAlg)
}

// answerDetail names an answer's rcode and, if it carries one, the TSIG
// error (BADKEY, BADSIG, BADTIME).
func answerDetail(r *mdns.Msg) string {
	s := rcodeName(r.Rcode)
	if t := r.IsTsig(); t != nil && t.Error != 0 {
		s += ", TSIG " + rcodeName(int(t.Error))
	}
	return s
}

func rcodeName(c int) string {
	if n, ok := mdns.RcodeToString[c]; ok {
		return n
	}
	return fmt.Sprintf("RCODE%d", c)
}

// query reads the RRset of type typ at name and returns its records.
func (s *Switcher) query(ctx context.Context, name string, typ uint16) ([]mdns.RR, error) {
	m := new(mdns.Msg)
	m.SetQuestion(name, typ)
	m.RecursionDesired = false
	what := fmt.Sprintf("query %s %s", name, mdns.TypeToString[typ])
	r, err := s.exchange(ctx, m, what)
	if err != nil {
		return nil, err
	}
	switch r.Rcode {
	case mdns.RcodeSuccess, mdns.RcodeNameError:
	case mdns.RcodeRefused, mdns.RcodeNotZone:
		return nil, dns.Permanent(fmt.Errorf("rfc2136: %s at %s: server answered %s: %w", what, s.cfg.Server, answerDetail(r), ErrRefused))
	default:
		return nil, fmt.Errorf("rfc2136: %s at %s: server answered %s: %w", what, s.cfg.Server, answerDetail(r), ErrServer)
	}
	if !r.Authoritative {
		return nil, dns.Permanent(fmt.Errorf("rfc2136: %s at %s: answer is not authoritative; Server must be the zone's primary: %w", what, s.cfg.Server, ErrRefused))
	}
	if r.Truncated {
		// A truncated answer holds part of the RRset or none of it;
		// read as the RRset it would make an empty set look absent.
		return nil, fmt.Errorf("rfc2136: %s at %s: answer truncated to fit a %s message (use Net \"tcp\"): %w", what, s.cfg.Server, s.cfg.Net, ErrServer)
	}
	var out []mdns.RR
	for _, rr := range r.Answer {
		h := rr.Header()
		if h.Rrtype == typ && h.Class == mdns.ClassINET && mdns.CanonicalName(h.Name) == name {
			out = append(out, rr)
		}
	}
	return out, nil
}

// readToken reads the token RRset (step 1 of the rule). It returns the
// records exactly as read, for the prerequisite, and their meaning: nil
// when there are none.
func (s *Switcher) readToken(ctx context.Context) ([]mdns.RR, *owner, error) {
	rrs, err := s.query(ctx, s.cfg.TokenName, mdns.TypeTXT)
	if err != nil {
		return nil, nil, err
	}
	o, err := decodeTokenRRset(rrs)
	if err != nil {
		return nil, nil, dns.Permanent(fmt.Errorf("rfc2136: token record %s at %s: %w", s.cfg.TokenName, s.cfg.Server, err))
	}
	return rrs, o, nil
}

// decodeTokenRRset interprets the TXT RRset at the token name: none, or
// exactly one well-formed record.
func decodeTokenRRset(rrs []mdns.RR) (*owner, error) {
	switch len(rrs) {
	case 0:
		return nil, nil
	case 1:
	default:
		return nil, fmt.Errorf("%d TXT records, want at most 1: %w", len(rrs), ErrMalformed)
	}
	txt, ok := rrs[0].(*mdns.TXT)
	if !ok {
		return nil, fmt.Errorf("record %q is not TXT: %w", rrs[0].String(), ErrMalformed)
	}
	o, err := tokenrec.Parse(txt.Txt)
	if err != nil {
		return nil, fmt.Errorf("%v: %w", err, ErrMalformed)
	}
	return &o, nil
}

// readRecords reads the RRset at Name.
func (s *Switcher) readRecords(ctx context.Context) ([]mdns.RR, error) {
	return s.query(ctx, s.cfg.Name, s.typ)
}

// send sends an update built by Promote or Demote and maps the answer
// (step 4 of the rule).
func (s *Switcher) send(ctx context.Context, m *mdns.Msg, op string, t fence.Token) error {
	what := fmt.Sprintf("%s %s with token %d: update zone %s", op, s.cfg.Name, t, s.cfg.Zone)
	r, err := s.exchange(ctx, m, what)
	if err != nil {
		return err
	}
	switch r.Rcode {
	case mdns.RcodeSuccess:
		return nil
	case mdns.RcodeNXRrset, mdns.RcodeYXRrset, mdns.RcodeNameError, mdns.RcodeYXDomain:
		// The prerequisite failed: someone changed the token record
		// since we read it. Say who, if we can.
		_, cur, rerr := s.readToken(ctx)
		if rerr == nil && cur != nil && cur.Token > t {
			return fmt.Errorf("rfc2136: %s: lost the race to member %q: %w", what, cur.Member, fence.Stale(t, cur.Token))
		}
		now := "unreadable"
		if rerr == nil {
			now = fmt.Sprint(cur)
		}
		return fmt.Errorf("rfc2136: %s: prerequisite failed (%s); token record %s now %s: %w",
			what, rcodeName(r.Rcode), s.cfg.TokenName, now, ErrConflict)
	case mdns.RcodeRefused, mdns.RcodeNotZone, mdns.RcodeNotImplemented, mdns.RcodeFormatError:
		return dns.Permanent(fmt.Errorf("rfc2136: %s at %s: server answered %s: %w", what, s.cfg.Server, answerDetail(r), ErrRefused))
	default:
		return fmt.Errorf("rfc2136: %s at %s: server answered %s: %w", what, s.cfg.Server, answerDetail(r), ErrServer)
	}
}
